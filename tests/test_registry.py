"""Registries, not branches: the family registry (runtime names, runners, inspectors, device formats)
and the TFLite delegate registry are what every caller reads, so a new one is a line there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import read_artifact
from edgekit.devices import DeviceProfile
from edgekit.errors import DeviceUnavailable
from edgekit.formats import FAMILIES, Family, Format, device_runtimes
from edgekit.runtimes import open_runner, tflite


def test_every_family_has_an_importable_runner_and_inspector() -> None:
    import importlib

    for family in Family:
        backend = FAMILIES[family]
        for target in (backend.runner, backend.inspector):
            module, _, name = target.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), target


def test_device_runtimes_and_deployable_formats_come_from_the_registry() -> None:
    assert device_runtimes() == {"onnxruntime": Format.ONNX, "tflite": Format.TFLITE}
    assert [f for f in Format if f.deployable] == [Format.ONNX, Format.TFLITE]
    profile = DeviceProfile.from_yaml("name: x\nruntime: onnxruntime\n", "x.yaml")
    assert profile.runtime == "onnxruntime"
    with pytest.raises(Exception, match="runtime must be one of any, onnxruntime, tflite"):
        DeviceProfile.from_yaml("name: x\nruntime: openvino\n", "x.yaml")


def test_a_registered_delegate_is_loaded_by_name(tiny_tflite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in delegate (no such hardware here): one DELEGATES line and a profile naming it are all a
    delegate needs. Its library is absent, so the runner says which library it tried and, with
    allow_fallback, runs on the CPU and says so; never silently."""
    tried: list[str | None] = []

    def stand_in_library(device: DeviceProfile | None) -> str:
        tried.append(device.name if device else None)
        return "/nonexistent/libstand_in_delegate.so"

    monkeypatch.setitem(tflite.DELEGATES, "stand-in", stand_in_library)
    profile = DeviceProfile.from_yaml("name: stand-in-board\nruntime: tflite\ndelegates: [stand-in]\n", "p.yaml")
    artifact = read_artifact(tiny_tflite)
    with pytest.raises(DeviceUnavailable, match="stand-in delegate cannot be loaded: /nonexistent/libstand_in"):
        open_runner(artifact, device=profile)
    assert tried == ["stand-in-board"]
    with open_runner(artifact, device=profile, allow_fallback=True) as runner:
        assert "stand-in unavailable, ran on the CPU" in runner.describe()
        shape = [d if d > 0 else 1 for d in runner.inputs()[0].shape]
        assert np.isfinite(runner.infer([np.zeros(shape, np.float32)])[0]).all()


def test_an_unknown_delegate_names_the_registered_ones(tiny_tflite: Path) -> None:
    profile = DeviceProfile.from_yaml("name: b\nruntime: tflite\ndelegates: [nnapi]\n", "p.yaml")
    with pytest.raises(DeviceUnavailable, match="unknown TFLite delegate 'nnapi'") as caught:
        open_runner(read_artifact(tiny_tflite), device=profile)
    assert "edgetpu" in caught.value.fix and "gpu" in caught.value.fix


def test_parity_and_validate_are_one_engine(
    tiny_tflite: Path, torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Conversion parity and drift validation both pair outputs through edgekit.compare: on the same
    real crops they see the same largest |Δ| between a model and its conversion."""
    import shutil

    from edgekit.data import DataSource
    from edgekit.parity import compare
    from edgekit.preprocess import PRESETS, list_images, load_image
    from edgekit.validate import compare_on_data

    files = [Path(shutil.copy(f, tmp_path)) for f in list_images(crops["val"])[:4]]
    with open_runner(read_artifact(torch_models["pt2"])) as source, open_runner(read_artifact(tiny_tflite)) as result:
        parity = compare(source, result, PRESETS["unit"], [load_image(f) for f in files])
        drift = compare_on_data(source, result, PRESETS["unit"], DataSource(tmp_path))
    assert drift.images == 4 and parity[0].top1_agreement == drift.top1_agreement
    assert drift.max_abs_diff == pytest.approx(parity[0].max_abs_diff, rel=1e-6)
