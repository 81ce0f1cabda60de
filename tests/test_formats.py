"""Format detection by content, and clear errors for files that are not models."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.errors import BadInput
from edgekit.formats import Format, detect_format


def test_detects_every_source_format(torch_models: dict[str, Path], keras_models: dict[str, Path]) -> None:
    assert detect_format(torch_models["pt2"]) is Format.PT2
    assert detect_format(torch_models["torchscript"]) is Format.TORCHSCRIPT
    assert detect_format(torch_models["state_dict"]) is Format.TORCH_CHECKPOINT
    assert detect_format(keras_models["keras"]) is Format.KERAS
    assert detect_format(keras_models["h5"]) is Format.KERAS_H5
    assert detect_format(keras_models["saved_model"]) is Format.SAVED_MODEL


def test_content_wins_over_suffix(torch_models: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(torch_models["pt2"].read_bytes())
    assert detect_format(renamed) is Format.PT2


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.onnx", b"", "is empty"),
        ("random.tflite", b"\x13\x37" * 64, "content is not a tflite model"),
        ("random.pt2", b"garbage" * 10, "content is not a pt2 model"),
        ("random.h5", b"not hdf5 at all", "content is not a keras-h5 model"),
        ("notes.txt", b"hello", "not a model format edgekit knows"),
        ("trunc.keras", b"PK\x03\x04" + b"\x00" * 20, "corrupt or truncated zip"),
    ],
)
def test_bad_files_name_the_file_and_the_fix(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        detect_format(path)
    assert expected in info.value.line()
    assert str(path) in info.value.line()


def test_directory_without_saved_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"directory without saved_model\.pb"):
        detect_format(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        detect_format(tmp_path / "nope.onnx")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(min_size=0, max_size=256),
    suffix=st.sampled_from([".onnx", ".tflite", ".pt2", ".pth", ".keras", ".h5", ".xyz", ""]),
)
def test_detection_never_crashes_on_random_bytes(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    with contextlib.suppress(BadInput):
        assert isinstance(detect_format(path), Format)
