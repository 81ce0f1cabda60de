"""Labelled real data: CNNs trained on scikit-learn's digits keep their accuracy through int8
(drop <= 0.3 points), in PyTorch -> ONNX and Keras -> TFLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.validate import Limits, validate_models


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
            format=target,
            calib=digits["train"],
            calib_count=200,
            val=digits["test"],
            val_count=1000,
            output=output,
            budget=Limits(max_accuracy_drop=0.3),
        ),
    )
    val = report.validation
    assert val.images == 450 and val.reference_accuracy is not None
    assert val.reference_accuracy > 0.95, "the fixture CNN should learn digits"
    assert val.accuracy_drop <= 0.3 and report.passed and output.is_file()
    check = validate_models(source, output, digits["test"], limits=Limits(max_accuracy_drop=0.3))
    assert check.passed and check.candidate_accuracy > 0.95
