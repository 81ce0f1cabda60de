"""`edgekit run`: the camera loop on video files, image folders and single images made from real photos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.artifact import read_artifact
from edgekit.camera.loop import ClassifierLoop, LoopOptions
from edgekit.camera.run import WorkerPlan, loop_threads, open_workers, plan_workers
from edgekit.camera.sources import CaptureSettings, CaptureSource, SourceLost, open_source
from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.devices import host_facts, load_profile, usable_cores
from edgekit.formats import Format
from edgekit.runtimes import open_runner
from tests.tiny_nets import write_onnx_failing_at_run_time
from tests.videos import decoded_frames, direct_top1, free_port, serve_mjpeg, write_photo_video

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "china", "flower")


@pytest.fixture(scope="module")
def tiny_onnx(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "tiny.onnx"
    return convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=output, check_images=2)).output


@pytest.fixture(scope="module")
def video(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 MJPG video of 24 frames cycling through real photos."""
    photos = [photos_dir / f"{PHOTOS[index % len(PHOTOS)]}.png" for index in range(24)]
    return write_photo_video(tmp_path_factory.mktemp("video") / "photos.avi", photos, fps=12)


def _run(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, ["run", *[str(a) for a in args], "--headless"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


@pytest.mark.parametrize("workers", ["1", "3"])
def test_headless_top1_equals_direct_inference(tiny_tflite: Path, video: Path, workers: str) -> None:
    code, lines, stderr = _run(tiny_tflite, "--source", video, "-k", "1", "--workers", workers)
    assert code == 0, stderr
    assert [line["frame"] for line in lines] == list(range(24))  # in order, also when workers overtake each other
    assert [line["top"][0]["index"] for line in lines] == direct_top1(tiny_tflite, video)
    assert all(line["latency_ms"] > 0 for line in lines)
    assert "24 frames" in stderr and "FPS" in stderr and f"{workers} worker(s)" in stderr


def test_json_ends_with_the_summary(tiny_tflite: Path, video: Path) -> None:
    """`run --json`: the per-frame lines, then one summary line instead of the table on stderr."""
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--json")
    assert code == 0, stderr
    assert [line["frame"] for line in lines[:-1]] == list(range(24))
    summary = lines[-1]["summary"]
    assert summary["frames"] == 24 and summary["fps"] > 0 and summary["stopped_by"]
    assert "FPS" not in stderr


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_recording_is_playable_with_every_frame(tiny_tflite: Path, video: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"annotated{suffix}"
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--record", out)
    assert code == 0, stderr
    frames = decoded_frames(out)
    assert len(frames) == len(lines) == 24 and frames[0].shape == (480, 640, 3)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_image_folder_single_image_and_limits(tiny_tflite: Path, photos_dir: Path) -> None:
    code, lines, _ = _run(tiny_tflite, "--source", photos_dir)
    assert code == 0 and len(lines) == len(list(photos_dir.glob("*.png")))
    code, lines, _ = _run(tiny_tflite, "--source", photos_dir / "chelsea.png")
    assert code == 0 and len(lines) == 1
    code, lines, stderr = _run(tiny_tflite, "--source", photos_dir, "--loop", "--max-frames", "30")
    assert code == 0 and len(lines) == 30 and "frame limit" in stderr


def test_onnx_workers_share_one_session_tflite_workers_do_not(tiny_onnx: Path, tiny_tflite: Path, video: Path) -> None:
    """onnxruntime sessions take concurrent calls, so workers share one (the weights load once); TFLite
    interpreters do not, so each worker opens its own. Results match direct inference either way."""
    import contextlib

    plan, cpu = WorkerPlan(workers=3, threads=1), load_profile("cpu")
    for model, distinct in ((tiny_onnx, 1), (tiny_tflite, 3)):
        with contextlib.ExitStack() as stack:
            runners = open_workers(stack, read_artifact(model), plan, cpu, allow_fallback=False)
            assert len(runners) == 3 and len({id(r) for r in runners}) == distinct
        code, lines, stderr = _run(model, "--source", video, "-k", "1", "--workers", "3")
        assert code == 0, stderr
        assert [line["top"][0]["index"] for line in lines] == direct_top1(model, video)


def test_frame_limit_is_exact_with_several_workers(tiny_tflite: Path, video: Path) -> None:
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--loop", "--workers", "3", "--max-frames", "50")
    assert code == 0 and "frame limit" in stderr
    assert [line["frame"] for line in lines] == list(range(50))


def test_worker_plan(tiny_tflite: Path, torch_models: dict[str, Path], video: Path) -> None:
    """Files: one single-threaded worker per core; live sources, --realtime, accelerators, source models: one."""
    cores = usable_cores()
    tflite, cpu, coral = read_artifact(tiny_tflite), load_profile("cpu"), load_profile("coral-usb")
    file_source, live_source = open_source(str(video)), FlakySource(video, fail_after=100)
    assert plan_workers(tflite, file_source, LoopOptions(), cpu) == WorkerPlan(cores, 1)
    assert plan_workers(tflite, live_source, LoopOptions(), cpu) == WorkerPlan(1, loop_threads())
    assert plan_workers(tflite, file_source, LoopOptions(realtime=True), cpu) == WorkerPlan(1, loop_threads())
    assert plan_workers(tflite, file_source, LoopOptions(), coral) == WorkerPlan(1, 1)
    assert plan_workers(read_artifact(torch_models["pt2"]), file_source, LoopOptions(), cpu).workers == 1
    assert plan_workers(tflite, live_source, LoopOptions(), cpu, workers=2, threads=3) == WorkerPlan(2, 3)
    assert plan_workers(tflite, file_source, LoopOptions(), cpu, workers=4) == WorkerPlan(4, max(1, cores // 4))
    file_source.close()
    live_source.close()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores and CPU affinity"
)
def test_worker_plan_follows_cpu_affinity(tiny_tflite: Path, video: Path) -> None:
    """Pinned to one core (taskset, a container's cpuset), the loop plans one single-threaded worker, not
    one per core of the machine (os.cpu_count() ignores affinity and oversubscribed the pinned core)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        source = open_source(str(video))
        plan = plan_workers(read_artifact(tiny_tflite), source, LoopOptions(), load_profile("cpu"))
        source.close()
        assert plan == WorkerPlan(1, 1)
        assert usable_cores() == 1 and host_facts()["usable_cores"] == 1 and loop_threads() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cores() == len(before)


def test_device_is_required_unless_fallback_is_allowed(tiny_tflite: Path, video: Path) -> None:
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--device", "coral-usb")
    assert code == 5 and not lines and "Traceback" not in stderr
    assert "edgetpu delegate cannot be loaded" in stderr and "--allow-fallback" in stderr
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--device", "coral-usb", "--allow-fallback")
    assert code == 0 and len(lines) == 24 and "[fallback: edgetpu unavailable" in stderr
    code, _, stderr = _run(tiny_tflite, "--source", video, "--device", "cuda-gpu")
    assert code == 6 and "runs onnxruntime models" in stderr


def test_inference_error_in_any_worker_is_one_line(photos_dir: Path, tmp_path: Path) -> None:
    broken = write_onnx_failing_at_run_time(tmp_path / "broken.onnx")
    code, lines, stderr = _run(broken, "--source", photos_dir, "--preset", "unit", "--workers", "3")
    assert code == 3 and not lines and "onnxruntime could not run" in stderr and "Traceback" not in stderr


def test_signal_handlers_are_given_back(tiny_tflite: Path, photos_dir: Path) -> None:
    """`edgekit run` points Ctrl-C at its loop while it runs, and restores the caller's handlers after."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    code, lines, _ = _run(tiny_tflite, "--source", photos_dir)
    assert code == 0 and lines
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_missing_camera_is_one_clear_line(tiny_tflite: Path) -> None:
    code, lines, stderr = _run(tiny_tflite, "--source", "7")
    assert code == 5 and not lines
    assert "edgekit: cannot open camera 7 (cameras on this machine:" in stderr and "Traceback" not in stderr


def test_missing_source_and_display(tiny_tflite: Path, tmp_path: Path) -> None:
    code, _, stderr = _run(tiny_tflite, "--source", tmp_path / "nope.mp4")
    assert code == 3 and "does not exist" in stderr
    result = CliRunner(env={"DISPLAY": ""}).invoke(
        cli, ["run", str(tiny_tflite), "--source", str(tmp_path), "--display"]
    )
    assert result.exit_code in (3, 5)


class FlakySource(CaptureSource):
    """A real video file that behaves like a camera which drops out once after `fail_after` frames."""

    live = True

    def __init__(self, path: Path, fail_after: int) -> None:
        super().__init__(str(path), CaptureSettings(), live=True)
        self.fail_after, self.failed, self.reopened = fail_after, False, 0

    def frames(self) -> Iterator[np.ndarray]:
        for count, frame in enumerate(super().frames(), start=1):
            yield frame
            if count == self.fail_after and not self.failed:
                self.failed = True
                raise SourceLost("test camera unplugged")

    def reopen(self) -> None:
        self.reopened += 1
        super().reopen()


def _classify_live(model: Path, source: Any, options: LoopOptions, results: list, messages: list[str]) -> Any:
    """Run the loop over a live source, collecting every result and log line; its summary."""
    artifact = read_artifact(model)
    with open_runner(artifact) as runner:
        loop = ClassifierLoop([runner], artifact.preprocessing, None, source, options, messages.append)
        return loop.run(lambda result, frame: results.append(result))


def test_live_source_is_reconnected_without_leaving_the_loop(tiny_tflite: Path, video: Path) -> None:
    source = FlakySource(video, fail_after=5)
    results: list = []
    messages: list[str] = []
    summary = _classify_live(tiny_tflite, source, LoopOptions(reconnect_delay=0.01, max_frames=20), results, messages)
    assert summary.reconnects == 1 and source.reopened == 1
    assert any("unplugged; reconnecting" in m for m in messages)
    assert summary.frames == len(results) == 20  # frames kept flowing after the reconnect


@pytest.mark.slow
def test_http_stream_server_killed_and_restarted(tiny_tflite: Path, photos_dir: Path) -> None:
    """A real MJPEG-over-HTTP stream (what IP cameras and mjpg-streamer serve): its server process is
    killed mid-stream and started again; the loop reconnects with back-off and keeps classifying."""
    import time

    port = free_port()

    def start_server() -> subprocess.Popen:
        return serve_mjpeg(port, photos_dir)

    servers = [start_server()]
    results: list = []
    messages: list[str] = []

    def kill_then_restart() -> None:
        while len(results) < 15:
            time.sleep(0.02)
        servers[0].kill()
        servers[0].wait()
        time.sleep(1.0)
        servers.append(start_server())

    try:
        source = open_source(f"http://127.0.0.1:{port}/stream.mjpg")
        assert source.live
        restarter = threading.Thread(target=kill_then_restart, daemon=True)
        restarter.start()
        options = LoopOptions(reconnect_delay=0.2, max_frames=45, max_reconnects=20)
        summary = _classify_live(tiny_tflite, source, options, results, messages)
        restarter.join(timeout=30)
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert len(servers) == 2, "the server was never restarted"
    assert summary.reconnects >= 1 and summary.frames == 45
    assert any("stopped delivering frames; reconnecting" in m for m in messages), messages
    assert summary.stopped_by == "frame limit"


def test_open_source_kinds(video: Path, photos_dir: Path) -> None:
    assert open_source(str(video)).live is False
    assert open_source(str(photos_dir)).name == str(photos_dir)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_loop_with_summary_and_playable_recording(
    tiny_tflite: Path, video: Path, tmp_path: Path, signum: int
) -> None:
    """Ctrl-C or SIGTERM mid-run (a looping file, two workers): exit 0, the summary, a recording that plays
    with as many frames as were reported, and no temporary file left beside it."""
    out = tmp_path / "annotated.mp4"
    args = [sys.executable, "-m", "edgekit", "run", str(tiny_tflite), "--source", str(video), "--loop"]
    args += ["--headless", "--workers", "2", "--record", str(out)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(40)]  # the loop is running and has written frames
    process.send_signal(signum)
    # Read on through the same buffered file: communicate() reads the raw pipe, so a line that
    # readline() had half read ahead would lose its start. A loop that ignores the signal is killed
    # after 60 s (and fails on its exit status) instead of hanging the test.
    killer = threading.Timer(60, process.kill)
    killer.start()
    try:
        rest = process.stdout.read()
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        killer.cancel()
    process.wait(timeout=10)
    lines += rest.splitlines()
    reported = [json.loads(line) for line in lines if line.startswith("{")]
    assert process.returncode == 0, stderr
    assert "stopped by interrupted" in stderr and "Traceback" not in stderr
    assert [line["frame"] for line in reported] == list(range(len(reported)))
    assert len(decoded_frames(out)) == len(reported) >= 40
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_closed_stdout_ends_the_loop_quietly(tiny_tflite: Path, video: Path) -> None:
    """`edgekit run ... --headless | head -3`: the reader goes away; no traceback, the loop stops."""
    args = [sys.executable, "-m", "edgekit", "run", str(tiny_tflite), "--source", str(video), "--loop", "--headless"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    first = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert all(line.startswith("{") for line in first) and "Traceback" not in stderr


def test_results_are_handled_on_the_callers_thread(tiny_tflite: Path, video: Path) -> None:
    """Overlay, recording and the window run where `run` was called (inference on worker threads):
    OpenCV's Qt and Cocoa windows only work from the main thread."""
    artifact = read_artifact(tiny_tflite)
    handled = set()
    with open_runner(artifact) as first, open_runner(artifact) as second:
        loop = ClassifierLoop([first, second], artifact.preprocessing, None, open_source(str(video)), LoopOptions())
        summary = loop.run(lambda result, frame: handled.add(threading.current_thread()))
    assert summary.frames == 24 and summary.workers == 2
    assert handled == {threading.current_thread()}


class StandInPicamera2:
    """Stand-in for picamera2.Picamera2 (no Pi camera module here): serves the real photos at the
    configured size in Picamera2's RGB888 layout (B, G, R), and records how it was driven. The real
    capture paths are tested above on video files, folders and a live MJPEG stream."""

    photos: ClassVar[list[Path]] = []
    opened: ClassVar[list[StandInPicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num, self.config, self.started, self.closed, self.index = camera_num, None, False, False, 0
        StandInPicamera2.opened.append(self)

    def create_video_configuration(self, main: dict, controls: dict) -> dict:
        return {"main": main, "controls": controls}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, stream: str = "main") -> np.ndarray:
        import cv2

        assert self.started and stream == "main" and self.config["main"]["format"] == "RGB888"
        photo = self.photos[self.index % len(self.photos)]
        self.index += 1
        return cv2.resize(cv2.imread(str(photo)), self.config["main"]["size"])

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def test_picamera2_source_classifies_the_camera_modules_frames(
    tiny_tflite: Path, photos_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--source picamera2:1: frames come from Picamera2 at the requested size, are classified as the
    same images are by the runner alone, and the camera is stopped and closed at the end."""
    import types

    import cv2

    from edgekit.preprocess import image_to_tensor

    photos = [photos_dir / f"{name}.png" for name in PHOTOS]
    monkeypatch.setattr(StandInPicamera2, "photos", photos)
    monkeypatch.setattr(StandInPicamera2, "opened", [])
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=StandInPicamera2))
    source = open_source("picamera2:1", CaptureSettings(width=320, height=240, fps=15))
    assert source.live and source.name == "Pi camera 1 (Picamera2)"
    results: list = []
    summary = _classify_live(tiny_tflite, source, LoopOptions(max_frames=6), results, [])
    source.close()
    camera = StandInPicamera2.opened[0]
    assert camera.camera_num == 1 and camera.config["controls"] == {"FrameRate": 15} and camera.closed
    artifact = read_artifact(tiny_tflite)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
        frames = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in photos]
        expected = [int(np.argmax(runner.infer([image_to_tensor(f, artifact.preprocessing, spec, order="BGR")])[0]))
                    for f in frames]  # fmt: skip
    assert summary.frames == 6 and [r.top[0].index for r in results] == expected


def test_picamera2_or_gstreamer_missing_is_one_line(tiny_tflite: Path) -> None:
    """This host has neither picamera2 nor a GStreamer-enabled OpenCV (pip's opencv-python-headless):
    each is refused in one line naming what a Pi user installs."""
    from edgekit.camera.sources import opencv_has_gstreamer
    from edgekit.errors import BadInput, DeviceUnavailable

    with pytest.raises(DeviceUnavailable, match="needs the picamera2 package") as missing:
        open_source("picamera2")
    assert "apt install python3-picamera2" in missing.value.line() and "--system-site-packages" in missing.value.line()
    with pytest.raises(BadInput, match="camera number must be an integer"):
        open_source("picamera2:left")
    assert not opencv_has_gstreamer()
    result = CliRunner().invoke(cli, ["run", str(tiny_tflite), "--source", "videotestsrc ! videoconvert ! appsink"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 5 and len(lines) == 1 and "was built without GStreamer" in lines[0], result.output
    assert "apt install python3-opencv" in lines[0]
