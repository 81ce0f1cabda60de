"""Frame sources: camera index or /dev/videoN (V4L2), a Raspberry Pi camera module through Picamera2
(libcamera), GStreamer pipeline, RTSP/HTTP stream, video file, image folder, single image. Each yields
BGR frames; live sources can be reopened after a failure."""

from __future__ import annotations

import abc
import dataclasses
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import VIDEO_SUFFIXES
from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.preprocess import IMAGE_SUFFIXES


@dataclasses.dataclass
class CaptureSettings:
    """Requested camera settings (None: the device's default)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None  # e.g. MJPG, YUYV
    loop: bool = False  # restart a video file at its end (soak tests, demos)


class FrameSource(abc.ABC):
    """Something that yields frames; `live` sources drop stale frames and reconnect."""

    live: bool = False

    @abc.abstractmethod
    def frames(self) -> Iterator[np.ndarray]:
        """BGR uint8 frames until the source ends (raises SourceLost when a live source fails)."""

    def reopen(self) -> None:
        """Reconnect a live source (no-op for files)."""

    def close(self) -> None:
        """Release the device or file."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What this source is, for messages."""


class SourceLost(Exception):
    """A live source stopped delivering frames."""


class CaptureSource(FrameSource):
    """cv2.VideoCapture over a camera, a stream URL, a GStreamer pipeline or a video file."""

    def __init__(self, target: int | str, settings: CaptureSettings, live: bool, backend: int | None = None) -> None:
        self.target, self.settings, self.live, self.backend = target, settings, live, backend
        self._capture = self._open()

    @property
    def name(self) -> str:
        """e.g. 'camera 0' or the file path."""
        return f"camera {self.target}" if isinstance(self.target, int) else str(self.target)

    def _open(self) -> Any:
        import cv2

        capture = cv2.VideoCapture(self.target) if self.backend is None else cv2.VideoCapture(self.target, self.backend)
        if not capture.isOpened():
            capture.release()
            raise self._cannot_open()
        settings = self.settings
        if settings.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*settings.fourcc[:4].ljust(4)))
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, settings.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, settings.height),
            (cv2.CAP_PROP_FPS, settings.fps),
        ):
            if value:
                capture.set(prop, value)
        return capture

    def _cannot_open(self) -> Exception:
        if isinstance(self.target, int) or str(self.target).startswith("/dev/video"):
            cameras = available_cameras()
            present = ", ".join(cameras) if cameras else "none found"
            return DeviceUnavailable(
                f"cannot open {self.name} (cameras on this machine: {present})",
                fix="plug in a camera, check permissions (group 'video'), or pass --source FILE",
            )
        if self.backend is not None and "!" in str(self.target):
            return DeviceUnavailable(
                f"GStreamer pipeline {self.target!r} cannot be opened",
                fix="check it with gst-launch-1.0 (a missing element needs its gstreamer1.0-plugins-* package); "
                "it must end in appsink",
            )
        if "://" in str(self.target):
            return DeviceUnavailable(f"cannot open stream {self.target}", fix="check the URL and that it is reachable")
        return BadInput(f"video {self.target} cannot be opened", fix="give an MJPG/H.264 file OpenCV can decode")

    def frames(self) -> Iterator[np.ndarray]:
        """Read until the end (files) or a failure (live: SourceLost)."""
        while True:
            ok, frame = self._capture.read()
            if ok and frame is not None:
                yield frame
                continue
            if self.live:
                raise SourceLost(f"{self.name} stopped delivering frames")
            if self.settings.loop:
                import cv2

                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._capture.read()
                if ok:
                    yield frame
                    continue
            return

    def reopen(self) -> None:
        """Release and open again."""
        self._capture.release()
        self._capture = self._open()

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()

    def fps(self) -> float:
        """The source's nominal frame rate (0 when unknown)."""
        import cv2

        return float(self._capture.get(cv2.CAP_PROP_FPS) or 0)


class ImagesSource(FrameSource):
    """A folder of images (sorted, recursive) or a single image; unreadable files are skipped."""

    def __init__(self, files: list[Path], label: str, loop: bool = False) -> None:
        self.files, self._label, self.loop = files, label, loop
        self.skipped = 0

    @property
    def name(self) -> str:
        """The folder or file."""
        return self._label

    def frames(self) -> Iterator[np.ndarray]:
        """Each readable image once (or forever with loop)."""
        import cv2

        while True:
            for path in self.files:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if frame is None:
                    self.skipped += 1
                    continue
                yield frame
            if not self.loop:
                return


PICAMERA2_FIX = (
    "on Raspberry Pi OS: sudo apt install python3-picamera2, and make edgekit's venv with "
    "python3 -m venv --system-site-packages so that it sees the system's picamera2"
)


class Picamera2Source(FrameSource):
    """A Raspberry Pi camera module through Picamera2 (libcamera), the way Raspberry Pi OS runs it:
    the CSI camera has no V4L2 capture node that OpenCV can read. Frames are requested as RGB888,
    which Picamera2 lays out B, G, R: already OpenCV's order."""

    live = True

    def __init__(self, camera: int, settings: CaptureSettings) -> None:
        self.camera, self.settings = camera, settings
        self._picam = self._open()

    @property
    def name(self) -> str:
        """e.g. 'Pi camera 0 (Picamera2)'."""
        return f"Pi camera {self.camera} (Picamera2)"

    def _open(self) -> Any:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise DeviceUnavailable("--source picamera2 needs the picamera2 package", fix=PICAMERA2_FIX) from None
        try:
            picam = Picamera2(self.camera)
        except (IndexError, RuntimeError) as exc:
            raise DeviceUnavailable(
                f"no Pi camera {self.camera} ({exc})", fix="check the ribbon cable and `rpicam-hello --list-cameras`"
            ) from None
        main = {"format": "RGB888", "size": (self.settings.width or 640, self.settings.height or 480)}
        controls = {"FrameRate": self.settings.fps} if self.settings.fps else {}
        picam.configure(picam.create_video_configuration(main=main, controls=controls))
        picam.start()
        return picam

    def frames(self) -> Iterator[np.ndarray]:
        """Frames until the camera fails (SourceLost)."""
        while True:
            try:
                frame = self._picam.capture_array("main")
            except RuntimeError as exc:
                raise SourceLost(f"{self.name} stopped delivering frames ({exc})") from None
            yield np.ascontiguousarray(frame[..., :3])

    def reopen(self) -> None:
        """Close and open the camera again."""
        self.close()
        self._picam = self._open()

    def close(self) -> None:
        """Stop and release the camera."""
        self._picam.stop()
        self._picam.close()


def opencv_has_gstreamer() -> bool:
    """True when this OpenCV was built with GStreamer (the apt python3-opencv is; pip's wheels are not)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def _gstreamer_source(spec: str, settings: CaptureSettings) -> CaptureSource:
    import cv2

    if not opencv_has_gstreamer():
        raise DeviceUnavailable(
            f"this OpenCV ({cv2.__version__}) was built without GStreamer, so it cannot open a pipeline",
            fix="on Raspberry Pi OS: sudo apt install python3-opencv gstreamer1.0-plugins-good, make the venv with "
            "--system-site-packages and pip uninstall opencv-python-headless there; or give --source /dev/video0",
        )
    return CaptureSource(spec, settings, live=True, backend=cv2.CAP_GSTREAMER)


def available_cameras() -> list[str]:
    """V4L2 video devices present (Linux)."""
    return sorted(glob.glob("/dev/video*"))


def open_source(spec: str, settings: CaptureSettings | None = None) -> FrameSource:
    """Turn --source into a frame source: 0 or /dev/video0, picamera2 or picamera2:N (a Pi camera module),
    rtsp://..., a GStreamer pipeline ('... ! appsink'), a video file, an image folder or one image."""
    settings = settings or CaptureSettings()
    if spec == "picamera2" or spec.startswith("picamera2:"):
        number = spec.partition(":")[2] or "0"
        if not number.isdigit():
            raise BadInput(f"source {spec}: the camera number must be an integer", fix="e.g. --source picamera2:0")
        return Picamera2Source(int(number), settings)
    if spec.isdigit():
        return CaptureSource(int(spec), settings, live=True, backend=_v4l2_backend())
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, settings, live=True, backend=_v4l2_backend())
    if "://" in spec:
        return CaptureSource(spec, settings, live=True)
    if "!" in spec:
        return _gstreamer_source(spec, settings)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInput(f"image folder {path} holds no images", fix="add .jpg/.png files or give a video")
        return ImagesSource(files, str(path), loop=settings.loop)
    if not path.exists():
        raise BadInput(
            f"source {spec} does not exist", fix="give a camera index, /dev/videoN, URL, video, folder or image"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImagesSource([path], str(path), loop=settings.loop)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return CaptureSource(str(path), settings, live=False)
    raise BadInput(f"source {spec} is not a video or image", fix=f"video suffixes: {', '.join(sorted(VIDEO_SUFFIXES))}")


def _v4l2_backend() -> int | None:
    import sys

    import cv2

    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else None


def backoff_delays(first: float = 0.5, limit: float = 8.0) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 8, ... seconds between reconnection attempts."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, limit)
