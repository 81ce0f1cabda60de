"""Sidecars: round trip, atomic writes, corrupt sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.artifact import ModelArtifact, TensorSpec, read_artifact, sidecar_path
from edgekit.errors import BadInput
from edgekit.formats import Format
from edgekit.fsutil import atomic_path
from edgekit.preprocess import PRESETS


def test_sidecar_round_trip(torch_models: dict[str, Path]) -> None:
    artifact = read_artifact(torch_models["pt2"])
    assert artifact.format is Format.PT2
    assert artifact.preprocessing == PRESETS["imagenet"]
    assert artifact.inputs[0].layout == "NCHW"
    data = json.loads(sidecar_path(torch_models["pt2"]).read_text())
    assert data["file"] == "tiny.pt2" and data["edgekit_schema"] == 1


def test_corrupt_sidecar_is_reported(tmp_path: Path, torch_models: dict[str, Path]) -> None:
    model = tmp_path / "m.pt2"
    model.write_bytes(torch_models["pt2"].read_bytes())
    sidecar_path(model).write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        read_artifact(model)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"), atomic_path(tmp_path / "no" / "out.onnx"):
        pass


def test_save_writes_specs(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(b"")
    ModelArtifact(
        path=path, format=Format.TFLITE, inputs=[TensorSpec("in", [1, 8, 8, 3], "int8", "NHWC", 0.5, -3)]
    ).save()
    stored = json.loads(sidecar_path(path).read_text())
    assert stored["inputs"][0] == {
        "name": "in",
        "shape": [1, 8, 8, 3],
        "dtype": "int8",
        "layout": "NHWC",
        "scale": 0.5,
        "zero_point": -3,
        "meaning": None,
    }
