"""The board protocol without QEMU: a stand-in board that runs the real worker (`python -m
edgekit.board_worker`) in a subprocess on this host. Same kernels, so validating through it must give
exactly the host's figures and zero host-vs-board change. The emulated ARM board itself is tested in
tests/test_board.py (the real path)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgekit.board import BoardRunner, Emulation, HostFolder, host_problems, stream_output
from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.formats import Format
from edgekit.validate import Limits, validate_models


class ThisHostBoard:
    """Stand-in for a board: its folder is a temporary folder here, its Python this host's."""

    python = sys.executable

    def describe(self) -> str:
        return "this host (stand-in board)"

    @contextlib.contextmanager
    def folder(self, prefix: str) -> Iterator[LocalFolder]:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield LocalFolder(Path(tmp))


class LocalFolder(HostFolder):
    """The stand-in board's folder: a temporary folder here, its commands run here."""

    @property
    def inside(self) -> str:
        return str(self.here)

    def run(self, argv: list[str], stream: bool = False) -> subprocess.CompletedProcess:
        return stream_output(argv) if stream else subprocess.run(argv, capture_output=True, text=True, check=False)


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


def test_quantize_budget_through_a_board_equals_the_budget_here(torch_models: dict[str, Path], tmp_path: Path) -> None:
    """The budget loop judges each candidate through the board when given one: with the stand-in (same
    kernels) every round's figures equal the ones measured here, and the report names the board."""
    from edgekit.quantize.api import QuantizeOptions, quantize_model
    from edgekit.samples import write_crops

    calib = write_crops(tmp_path / "calib", 16, seed=1)[0].parent
    val = write_crops(tmp_path / "val", 12, seed=2)[0].parent

    def options(name: str) -> QuantizeOptions:
        return QuantizeOptions(calib=calib, val=val, val_count=12, max_float_layers=2, output=tmp_path / name,
                               budget=Limits(min_agreement=1.01))  # fmt: skip  # unmeetable: every round runs

    here = quantize_model(torch_models["pt2"], options("here.onnx"))
    there = quantize_model(torch_models["pt2"], options("there.onnx"), board=ThisHostBoard())
    assert len(there.rounds) == len(here.rounds) > 1
    assert [(r.top1_agreement, r.mean_kl) for r in there.rounds] == [(r.top1_agreement, r.mean_kl) for r in here.rounds]
    assert there.validation.candidate_runtime.endswith("on this host (stand-in board)")
    assert here.validation.candidate_runtime is None


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client on this host")
def test_an_unreachable_board_is_one_line(tiny_tflite: Path, photos_dir: Path) -> None:
    """validate, classify and run --remote to a board that refuses the connection: one line, exit 5."""
    from click.testing import CliRunner

    from edgekit.cli.main import cli

    commands = [
        ["validate", str(tiny_tflite), str(tiny_tflite), "--data", str(photos_dir)],
        ["classify", str(tiny_tflite), str(photos_dir / "chelsea.png")],
        ["run", str(tiny_tflite), "--source", str(photos_dir)],
    ]
    for args in commands:
        result = CliRunner().invoke(cli, [*args, "--remote", "nobody@127.0.0.1", "--ssh-option", "Port=1"])
        errors = [line for line in result.stderr.splitlines() if line.startswith("edgekit:")]
        assert result.exit_code == 5 and len(errors) == 1, (args[0], result.output)
        assert errors[0].startswith("edgekit: cannot reach nobody@127.0.0.1 over SSH")
        assert "Traceback" not in result.output
