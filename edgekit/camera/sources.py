"""Frame sources: camera index or /dev/videoN (V4L2), GStreamer pipeline, RTSP/HTTP stream, video file,
image folder, single image. Each yields BGR frames; live sources can be reopened after a failure."""

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


def available_cameras() -> list[str]:
    """V4L2 video devices present (Linux)."""
    return sorted(glob.glob("/dev/video*"))


def open_source(spec: str, settings: CaptureSettings | None = None) -> FrameSource:
    """Turn --source into a frame source: 0 or /dev/video0, rtsp://..., a GStreamer pipeline ('... ! appsink'),
    a video file, an image folder or one image."""
    import cv2

    settings = settings or CaptureSettings()
    if spec.isdigit():
        return CaptureSource(int(spec), settings, live=True, backend=_v4l2_backend())
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, settings, live=True, backend=_v4l2_backend())
    if "://" in spec:
        return CaptureSource(spec, settings, live=True)
    if "!" in spec:
        return CaptureSource(spec, settings, live=True, backend=cv2.CAP_GSTREAMER)
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
