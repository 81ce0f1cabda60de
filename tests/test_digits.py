"""Labelled real data: CNNs trained on scikit-learn's digits keep their accuracy through int8
(drop <= 0.5 points), in PyTorch -> ONNX and Keras -> TFLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.artifact import ModelArtifact, TensorSpec
from edgekit.formats import Format
from edgekit.preprocess import PRESETS
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.validate import Limits, validate_models
from tests.digits import SIZE, digits_folders, load_split, train_keras, train_torch

LABELS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return digits_folders(tmp_path_factory.mktemp("digits"))


def _sidecar(path: Path, fmt: Format, shape: list[int | None], layout: str) -> None:
    ModelArtifact(
        path=path,
        format=fmt,
        preprocessing=PRESETS["unit"],
        labels=LABELS,
        inputs=[TensorSpec("input", shape, layout=layout)],
    ).save()


@pytest.fixture(scope="module")
def torch_digits(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    x, y = load_split(digits["train"])
    model = train_torch(x, y)
    path = tmp_path_factory.mktemp("tdigits") / "digits.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, SIZE, SIZE),)), str(path))
    _sidecar(path, Format.PT2, [1, 3, SIZE, SIZE], "NCHW")
    return path


@pytest.fixture(scope="module")
def keras_digits(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = load_split(digits["train"])
    path = tmp_path_factory.mktemp("kdigits") / "digits.keras"
    train_keras(x, y).save(path)
    _sidecar(path, Format.KERAS, [None, SIZE, SIZE, 3], "NHWC")
    return path


@pytest.mark.parametrize(
    ("fixture", "target"),
    [
        ("torch_digits", Format.ONNX),
        ("torch_digits", Format.TFLITE),
        ("keras_digits", Format.TFLITE),
        ("keras_digits", Format.ONNX),
    ],
)
def test_int8_keeps_digit_accuracy(
    request: pytest.FixtureRequest, digits: dict[str, Path], fixture: str, target: Format, tmp_path: Path
) -> None:
    source = request.getfixturevalue(fixture)
    output = tmp_path / f"digits.int8.{target.value}"
    report = quantize_model(
        source,
        QuantizeOptions(
            target=target,
            calib=digits["train"],
            calib_count=200,
            val=digits["test"],
            val_count=1000,
            output=output,
            budget=Limits(max_accuracy_drop=0.5),
        ),
    )
    val = report.validation
    assert val.images == 450 and val.reference_accuracy is not None
    assert val.reference_accuracy > 0.95, "the fixture CNN should learn digits"
    assert val.accuracy_drop <= 0.5 and report.passed and output.is_file()
    check = validate_models(source, output, digits["test"], limits=Limits(max_accuracy_drop=0.5))
    assert check.passed and check.candidate_accuracy > 0.95
