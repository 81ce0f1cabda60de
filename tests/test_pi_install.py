"""The Raspberry Pi install: a fresh venv with only `edgekit[pi]` (no torch, no TensorFlow) runs
`edgekit inspect`, `classify`, `bench` and `run` on real converted .tflite and .onnx models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import fetch_efficientnet_lite0
from edgekit.formats import Format

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pi-models")
    source = fetch_efficientnet_lite0()["pt2"]
    paths = {}
    for target in (Format.TFLITE, Format.ONNX):
        options = ConvertOptions(to=target, output=folder / f"effnet.{target.value}", check_images=4)
        paths[target.value] = convert_model(source, options).output
    return paths


def _run(pi_venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, env=env, cwd=pi_venv)


def test_heavy_frameworks_are_absent(pi_venv: Path) -> None:
    python = pi_venv / "bin" / "python"
    for module in ("torch", "tensorflow", "keras", "onnx"):
        assert _run(pi_venv, python, "-c", f"import {module}").returncode != 0, module
    assert _run(pi_venv, python, "-c", "import onnxruntime, ai_edge_litert, cv2").returncode == 0


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_inspect_and_classify_on_the_device_install(
    pi_venv: Path, converted: dict[str, Path], photos_dir: Path, fmt: str
) -> None:
    edgekit = pi_venv / "bin" / "edgekit"
    done = _run(pi_venv, edgekit, "inspect", converted[fmt], "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["format"] == fmt and info["labels"] == 1000 and info["preprocessing"]["preset"] == "imagenet"
    done = _run(pi_venv, edgekit, "classify", converted[fmt], photos_dir / "chelsea.png", "--json")
    assert done.returncode == 0, done.stderr
    top = json.loads(done.stdout)["results"][0]["top"][0]
    assert top["index"] == 285 and top["label"] == "Egyptian cat"


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bench_on_the_device_install(pi_venv: Path, converted: dict[str, Path], fmt: str) -> None:
    done = _run(pi_venv, pi_venv / "bin" / "edgekit", "bench", converted[fmt], "--runs", "10", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)[0]
    assert result["p50_ms"] > 0 and result["load_ms"] > 0 and result["first_ms"] > 0
    assert "torch" not in result["host"]["runtimes"] and "tensorflow" not in result["host"]["runtimes"]


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_run_on_the_device_install(pi_venv: Path, converted: dict[str, Path], photos_dir: Path, fmt: str) -> None:
    """The camera loop, headless over the photo folder, with only the runtime installed."""
    done = _run(pi_venv, pi_venv / "bin" / "edgekit", "run", converted[fmt], "--source", photos_dir, "--headless")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    photos = sorted(p.name for p in photos_dir.iterdir() if p.suffix == ".png")
    assert [line["frame"] for line in lines] == list(range(len(photos)))
    assert lines[photos.index("chelsea.png")]["top"][0]["label"] == "Egyptian cat"
    assert "worker(s)" in done.stderr and "FPS" in done.stderr


def test_device_install_says_what_is_missing(pi_venv: Path, tmp_path: Path) -> None:
    import torch

    from tests.tiny_nets import make_tiny

    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(make_tiny(), (torch.zeros(1, 3, 32, 32),)), str(pt2))
    done = _run(pi_venv, pi_venv / "bin" / "edgekit", "inspect", pt2)
    assert done.returncode == 4
    assert 'needs PyTorch: pip install "edgekit[torch]"' in done.stderr and "Traceback" not in done.stderr
    done = _run(pi_venv, pi_venv / "bin" / "edgekit", "fetch", "photos", "-d", tmp_path / "photos")
    assert done.returncode == 4  # the photos need scikit-image alone, not torch
    assert 'pip install "edgekit[photos]"' in done.stderr and "Traceback" not in done.stderr


def test_python_running_this_suite_is_not_the_pi_venv(pi_venv: Path) -> None:
    assert Path(sys.executable).resolve() != (pi_venv / "bin" / "python").resolve()
