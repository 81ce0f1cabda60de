"""The live classifier loop, pipelined in three stages that overlap:

  capture + preprocess (thread)  ->  inference (one thread per runner)
                                 ->  overlay, record, display, report (the caller's thread, in frame order)

The output stage runs on the caller's thread because GUI toolkits (OpenCV's Qt and Cocoa windows)
only work from the main thread.

Live sources keep only the newest frame (no stale-frame latency build-up; older ones count as
dropped); files deliver every frame unless `realtime`. A live source that fails is reopened with
back-off; Ctrl-C, SIGTERM or the frame/time limit end the loop cleanly with a finished recording.

Several runners are inference workers that take frames in turn (OpenVINO's throughput streams):
on a small CPU, workers of one thread each keep every core busy where one multi-threaded
interpreter waits on its slowest thread whenever capture takes a core.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import Preprocessing
from edgekit.camera.sources import FrameSource, SourceLost, backoff_delays
from edgekit.classify import Prediction, top_k
from edgekit.errors import DeviceUnavailable
from edgekit.output_meaning import meaning_of, to_probabilities
from edgekit.preprocess import image_to_tensor
from edgekit.runtimes import Runner

if TYPE_CHECKING:
    from edgekit.jsontypes import Json

STAGES = ("capture", "preprocess", "inference", "draw")
TIMING_WINDOW = 10_000  # frames whose stage timings the summary percentiles cover
_END = object()


@dataclasses.dataclass
class LoopOptions:
    """How the loop runs."""

    top_k: int = 3
    threshold: float = 0.0  # predictions below this probability are not reported
    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = False  # drop frames of files too, as a live camera would
    record: Path | None = None
    force: bool = False  # replace an existing recording
    draw: bool = False  # overlays are drawn when recording or displaying
    reconnect_delay: float = 0.5
    max_reconnects: int | None = None  # None: keep trying


@dataclasses.dataclass
class FrameResult:
    """One classified frame."""

    index: int
    timestamp: float
    top: list[Prediction]
    latency_ms: float  # capture to result

    def to_dict(self) -> Json:
        """The JSON line of --headless."""
        return {
            "frame": self.index,
            "timestamp": round(self.timestamp, 6),
            "latency_ms": round(self.latency_ms, 3),
            "top": [dataclasses.asdict(p) for p in self.top],
        }


@dataclasses.dataclass
class LoopSummary:
    """Printed at exit."""

    runtime: str
    workers: int
    frames: int
    seconds: float
    dropped: int
    reconnects: int
    stage_ms: dict[str, dict[str, float]]  # stage -> {p50, p99}
    latency_ms: dict[str, float]
    recording: str | None
    stopped_by: str

    @property
    def fps(self) -> float:
        """Frames per second over the whole run."""
        return self.frames / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class _Item:
    index: int
    captured: float
    frame: np.ndarray
    tensor: np.ndarray
    capture_ms: float
    preprocess_ms: float


@dataclasses.dataclass
class _Done:
    order: int  # the order inference workers took frames in, which is the order results are reported in
    item: _Item
    result: FrameResult


class ClassifierLoop:
    """Runs a model over a frame source; call `run(on_result)`; `stop()` may be called from any thread.

    `runners` are opened copies of one model, one per inference worker.
    """

    def __init__(
        self,
        runners: Sequence[Runner],
        prep: Preprocessing,
        labels: list[str] | None,
        source: FrameSource,
        options: LoopOptions,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        if not runners:
            raise ValueError("the loop needs at least one runner")
        self.runners, self.prep, self.labels, self.source, self.options, self.log = (
            list(runners),
            prep,
            labels,
            source,
            options,
            log,
        )
        self._stop = threading.Event()
        self._stopped_by = "end of source"
        self._slot: queue.Queue[Any] = queue.Queue(maxsize=1 if source.live or options.realtime else 4)
        self._out: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.dropped = self.reconnects = 0
        # Percentiles cover the most recent frames only, so memory stays flat on a loop that runs for days.
        self.times: dict[str, deque[float]] = {stage: deque(maxlen=TIMING_WINDOW) for stage in STAGES}
        self.latencies: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.frames = 0
        self._error: BaseException | None = None
        self._take = threading.Lock()  # frames are taken and numbered under it, so order is kept
        self._taken = 0
        self._working = len(self.runners)  # inference workers still running; the last one ends the output
        self._output_done = threading.Event()  # nobody takes results any more
        self._recent: deque[float] = deque(maxlen=30)  # when the last results were reported, for the FPS shown

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to finish (signal handlers call this)."""
        self._stopped_by = reason
        self._stop.set()

    def run(self, on_result: Callable[[FrameResult, np.ndarray | None], None]) -> LoopSummary:
        """Classify frames until the source ends or a limit or stop() is reached; `on_result` (and any
        window it shows) runs on this thread."""
        producer = threading.Thread(target=self._produce, name="edgekit-capture", daemon=True)
        started = time.perf_counter()
        workers = [
            threading.Thread(target=self._work, args=(runner, started), name=f"edgekit-infer-{n}", daemon=True)
            for n, runner in enumerate(self.runners)
        ]
        for thread in (producer, *workers):
            thread.start()
        try:
            self._consume(on_result)
        finally:
            self._output_done.set()
            self._stop.set()
            for worker in workers:
                worker.join()
            producer.join(timeout=5)
            self.source.close()
        if self._error is not None:
            raise self._error
        return self._summary(time.perf_counter() - started)

    def _produce(self) -> None:
        delays = backoff_delays(self.options.reconnect_delay)
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    index = self._capture_frames(index)
                    break  # the source ended
                except SourceLost as lost:
                    self._reconnect(lost, next(delays))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._error = exc
        finally:
            self._put(_END, block=True)

    def _capture_frames(self, index: int) -> int:
        spec = self.runners[0].inputs()[0]
        tick = time.perf_counter()
        for frame in self.source.frames():
            captured = time.perf_counter()
            tensor = image_to_tensor(frame, self.prep, spec, order="BGR")
            done = time.perf_counter()
            self._put(
                _Item(index, captured, frame, tensor, (captured - tick) * 1e3, (done - captured) * 1e3),
                block=not (self.source.live or self.options.realtime),
            )
            index += 1
            if self._stop.is_set():
                break
            tick = time.perf_counter()
        return index

    def _reconnect(self, lost: SourceLost, delay: float) -> None:
        limit = self.options.max_reconnects
        if limit is not None and self.reconnects >= limit:
            raise DeviceUnavailable(
                f"{lost}; gave up after {self.reconnects} reconnects", fix="check the camera or stream"
            )
        self.reconnects += 1
        self.log(f"{lost}; reconnecting in {delay:g}s (attempt {self.reconnects})")
        if self._stop.wait(delay):
            return
        try:
            self.source.reopen()
        except Exception as exc:  # noqa: BLE001 - still gone: the next round backs off further
            self.log(f"reconnect failed: {exc}")

    def _put(self, item: Any, block: bool) -> None:
        """Files wait for room (every frame counts); live sources replace the frame not yet taken."""
        while True:
            try:
                self._slot.put(item, block=block, timeout=0.1 if block else None)
                return
            except queue.Full:
                stopping = self._stop.is_set()
                if stopping and item is not _END:
                    return
                if stopping or not block:  # nobody will take the stale frame: make room
                    try:
                        self._slot.get_nowait()
                        self.dropped += 0 if stopping else 1
                    except queue.Empty:
                        pass

    def _work(self, runner: Runner, started: float) -> None:
        """One inference worker; the last to finish tells the output stage that no more results come."""
        try:
            self._infer(runner, started)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._error = self._error or exc
            self.stop("inference error")
        finally:
            with self._take:
                self._working -= 1
                last = self._working == 0
            if last:
                self._hand_on(_END)

    def _hand_on(self, entry: Any) -> None:
        """Queue a result for the output stage, unless that stage has already ended."""
        while not self._output_done.is_set():
            try:
                self._out.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def _take_next(self) -> tuple[int, _Item] | None:
        """The next frame and its place in the output order; None when the source has ended or the loop stops."""
        while not self._stop.is_set():
            with self._take:
                if self._stop.is_set():  # set while this worker waited for the lock
                    return None
                try:
                    item = self._slot.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _END:
                    self._slot.put(_END)  # for the other workers; the producer has finished, so there is room
                    return None
                order, self._taken = self._taken, self._taken + 1
                limit = self.options.max_frames
                if limit is not None and self._taken >= limit:
                    self.stop("frame limit")
                return order, item
        return None

    def _infer(self, runner: Runner, started: float) -> None:
        options = self.options
        kind = meaning_of(runner).kind
        while (taken := self._take_next()) is not None:
            order, item = taken
            begin = time.perf_counter()
            scores = runner.infer([item.tensor])[0]
            probabilities = to_probabilities(scores, kind)
            done = time.perf_counter()
            top = [p for p in top_k(probabilities, options.top_k, self.labels) if p.probability >= options.threshold]
            self.times["capture"].append(item.capture_ms)
            self.times["preprocess"].append(item.preprocess_ms)
            self.times["inference"].append((done - begin) * 1e3)
            result = FrameResult(item.index, item.captured, top, (done - item.captured) * 1e3)
            self._hand_on(_Done(order, item, result))
            if options.duration is not None and time.perf_counter() - started >= options.duration:
                self.stop("time limit")

    def _consume(self, on_result: Callable[[FrameResult, np.ndarray | None], None]) -> None:
        waiting: dict[int, _Done] = {}  # results that overtook an earlier frame on another worker
        expected = 0
        while True:
            entry = self._out.get()
            if entry is _END:
                for order in sorted(waiting):  # gaps only after a worker failed
                    self._report(waiting[order], on_result)
                return
            waiting[entry.order] = entry
            while expected in waiting:
                self._report(waiting.pop(expected), on_result)
                expected += 1

    def _report(self, done: _Done, on_result: Callable[[FrameResult, np.ndarray | None], None]) -> None:
        """Overlay (when drawing), hand the result on, and count it."""
        from edgekit.camera.overlay import draw_overlay

        item, result = done.item, done.result
        begin = time.perf_counter()
        self._recent.append(begin)
        recent = self._recent
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
        frame = draw_overlay(item.frame, result.top, fps, result.latency_ms) if self.options.draw else None
        try:
            on_result(result, frame)
        except BaseException as exc:  # noqa: BLE001 - e.g. a broken pipe on stdout: stop, report
            self._error = exc
            self.stop("output error")
        self.times["draw"].append((time.perf_counter() - begin) * 1e3)
        self.latencies.append(result.latency_ms)
        self.frames += 1

    def _summary(self, seconds: float) -> LoopSummary:
        def percentiles(values: list[float]) -> dict[str, float]:
            return (
                {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}
                if values
                else {"p50": 0.0, "p99": 0.0}
            )

        return LoopSummary(
            runtime=self.runners[0].describe(),
            workers=len(self.runners),
            frames=self.frames,
            seconds=seconds,
            dropped=self.dropped,
            reconnects=self.reconnects,
            stage_ms={stage: percentiles(values) for stage, values in self.times.items()},
            latency_ms=percentiles(self.latencies),
            recording=str(self.options.record) if self.options.record else None,
            stopped_by=self._stopped_by,
        )
