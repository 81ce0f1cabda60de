"""The board protocol without QEMU: a stand-in board that runs the real worker (`python -m
edgekit.board_worker`) in a subprocess on this host. Same kernels, so validating through it must give
exactly the host's figures and zero host-vs-board change. The emulated ARM board itself is tested in
tests/test_board.py (the real path)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.board import BoardRunner, Emulation, _stage, _worker_result, host_problems
from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.formats import Format
from edgekit.validate import validate_models


class ThisHostBoard:
    """Stand-in for a board: the worker runs in a subprocess of this host's Python."""

    def describe(self) -> str:
        return "this host (stand-in board)"

    def run_worker(self, model: Path, inputs: np.ndarray, threads: int | None) -> tuple[np.ndarray, dict]:
        with tempfile.TemporaryDirectory() as tmp:
            request = _stage(model, inputs, Path(tmp), Path(tmp), threads)
            done = subprocess.run(
                [sys.executable, "-m", "edgekit.board_worker", json.dumps(request)],
                capture_output=True,
                text=True,
                check=False,
            )
            return _worker_result(done, Path(tmp) / "outputs.npy", self.describe())


def test_validate_through_a_board_equals_validate_here(
    torch_models: dict[str, Path], tiny_tflite: Path, photos_dir: Path
) -> None:
    here = validate_models(torch_models["pt2"], tiny_tflite, photos_dir)
    there = validate_models(torch_models["pt2"], tiny_tflite, photos_dir, board=ThisHostBoard())
    assert there.top1_agreement == here.top1_agreement and there.mean_kl == pytest.approx(here.mean_kl, abs=1e-9)
    assert there.host_vs_device["top1_changed"] == 0 and there.host_vs_device["max_abs_diff"] == 0.0
    assert there.candidate_runtime.endswith("on this host (stand-in board)")
    assert there.host_vs_device["board"]["images"] == here.images == 8


def test_the_worker_reports_a_bad_model_in_one_line(tmp_path: Path) -> None:
    from edgekit.artifact import ModelArtifact, TensorSpec

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07" + bytes(64))
    artifact = ModelArtifact(junk, Format.ONNX, inputs=[TensorSpec("x", [1, 4])], outputs=[TensorSpec("y", [1, 2])])
    with pytest.raises(
        DeviceUnavailable, match=r"could not run on this host \(stand-in board\): .*could not be opened"
    ):
        BoardRunner(artifact, ThisHostBoard(), [np.zeros((1, 4), np.float32)])


def test_board_options_are_checked() -> None:
    from edgekit.board import open_board

    with pytest.raises(BadInput, match="has no emulated board"):
        Emulation.from_profile("cpu", None)
    with pytest.raises(BadInput, match="emulate takes cpu, arch"):
        Emulation.from_profile("x", {"cpu": "cortex-a72", "arch": "riscv64"})
    with pytest.raises(BadInput, match="alone runs nothing"):
        open_board("rpi4", emulate=False, remote=None, progress=print)
    assert Emulation.from_profile("rpi5", {"cpu": "cortex-a76"}) == Emulation("cortex-a76", "arm64", "bookworm")


def test_a_host_that_cannot_emulate_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root, debootstrap or QEMU's binfmt entry: one line each, naming the install or command."""
    import edgekit.board as board

    monkeypatch.setattr(board.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(board.shutil, "which", lambda name: None)
    problems = host_problems(Emulation("cortex-a72", debian="nonexistent-release"))
    assert any("needs root" in p for p in problems) and any("apt-get install debootstrap" in p for p in problems)
    from edgekit.board_prepare import prepare_board

    with pytest.raises(DeviceUnavailable, match="cannot prepare the emulated rpi4: the emulated board needs root"):
        prepare_board("rpi4", Emulation("cortex-a72"), progress=print)


def test_classify_through_a_board_equals_classify_here(tiny_tflite: Path, photos_dir: Path) -> None:
    from edgekit.classify import classify_images

    photos = sorted(photos_dir.glob("*.png"))
    _, here = classify_images(tiny_tflite, photos, k=3)
    runtime, there = classify_images(tiny_tflite, photos, k=3, board=ThisHostBoard())
    assert runtime.endswith("on this host (stand-in board)") and there == here
