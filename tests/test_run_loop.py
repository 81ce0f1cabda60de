"""`edgekit run`: the camera loop on video files, image folders and single images made from real photos."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.artifact import read_artifact
from edgekit.camera.loop import ClassifierLoop, LoopOptions
from edgekit.camera.sources import CaptureSettings, CaptureSource, SourceLost, open_source
from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.formats import Format
from edgekit.preprocess import image_to_tensor
from edgekit.runtimes import open_runner

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "china", "flower")


@pytest.fixture(scope="module")
def tiny_tflite(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "tiny.tflite"
    return convert_model(
        torch_models["pt2"], ConvertOptions(target=Format.TFLITE, output=output, check_images=2)
    ).output


@pytest.fixture(scope="module")
def video(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 MJPG video of 24 frames cycling through real photos."""
    path = tmp_path_factory.mktemp("video") / "photos.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (640, 480))
    for index in range(24):
        writer.write(cv2.resize(cv2.imread(str(photos_dir / f"{PHOTOS[index % len(PHOTOS)]}.png")), (640, 480)))
    writer.release()
    return path


def _decoded_frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _run(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, ["run", *[str(a) for a in args], "--headless"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_headless_top1_equals_direct_inference(tiny_tflite: Path, video: Path) -> None:
    code, lines, stderr = _run(tiny_tflite, "--source", video, "-k", "1")
    assert code == 0, stderr
    frames = _decoded_frames(video)
    assert [line["frame"] for line in lines] == list(range(len(frames))) == list(range(24))
    artifact = read_artifact(tiny_tflite)
    with open_runner(artifact) as runner:
        expected = [
            int(
                np.argmax(runner.infer([image_to_tensor(f[:, :, ::-1], artifact.preprocessing, runner.inputs()[0])])[0])
            )
            for f in frames
        ]
    assert [line["top"][0]["index"] for line in lines] == expected
    assert all(line["latency_ms"] > 0 for line in lines)
    assert "24 frames" in stderr and "FPS" in stderr


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_recording_is_playable_with_every_frame(tiny_tflite: Path, video: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"annotated{suffix}"
    code, lines, stderr = _run(tiny_tflite, "--source", video, "--record", out)
    assert code == 0, stderr
    frames = _decoded_frames(out)
    assert len(frames) == len(lines) == 24 and frames[0].shape == (480, 640, 3)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_image_folder_single_image_and_limits(tiny_tflite: Path, photos_dir: Path) -> None:
    code, lines, _ = _run(tiny_tflite, "--source", photos_dir)
    assert code == 0 and len(lines) == len(list(photos_dir.glob("*.png")))
    code, lines, _ = _run(tiny_tflite, "--source", photos_dir / "chelsea.png")
    assert code == 0 and len(lines) == 1
    code, lines, stderr = _run(tiny_tflite, "--source", photos_dir, "--loop", "--max-frames", "30")
    assert code == 0 and len(lines) == 30 and "frame limit" in stderr


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


def test_live_source_is_reconnected_without_leaving_the_loop(tiny_tflite: Path, video: Path) -> None:
    artifact = read_artifact(tiny_tflite)
    source = FlakySource(video, fail_after=5)
    messages: list[str] = []
    with open_runner(artifact) as runner:
        loop = ClassifierLoop(
            runner,
            artifact.preprocessing,
            None,
            source,
            LoopOptions(reconnect_delay=0.01, max_frames=20),
            messages.append,
        )
        results = []
        summary = loop.run(lambda result, frame: results.append(result))
    assert summary.reconnects == 1 and source.reopened == 1
    assert any("unplugged; reconnecting" in m for m in messages)
    assert summary.frames == len(results) == 20  # frames kept flowing after the reconnect


def test_open_source_kinds(video: Path, photos_dir: Path) -> None:
    assert open_source(str(video)).live is False
    assert open_source(str(photos_dir)).name == str(photos_dir)
