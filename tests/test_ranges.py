"""Activation ranges chosen by their effect on the output (edgekit.quantize.tflite_ranges), on the real
TFLite converter and runtime: a range inflated by one outlier image is narrowed, the whole model's
output moves closer to float on images the search did not see, and the file stays one that TFLite's
reference kernels (which check every bias scale) and XNNPACK accept, with tied scales still tied."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.quantize.tflite_bias import collect_outputs, output_error, reference_interpreter
from edgekit.quantize.tflite_ranges import SAME_SCALE_OPS, select_ranges

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    """A small conv -> max-pool -> conv -> flatten -> dense net, float and full-int8, calibrated on
    31 ordinary inputs and one 20x brighter outlier (which sets the min-max ranges)."""
    import keras

    from edgekit.loaders.keras_loader import import_tf

    tf = import_tf()
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 1)(x)
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    ordinary = [rng.normal(0, 0.5, (1, 16, 16, 3)).astype(np.float32) for _ in range(72)]
    calibration = [*ordinary[:31], ordinary[31] * 20]

    def representative():
        for sample in calibration:
            yield [sample]

    float_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return {"float": float_model, "int8": converter.convert(), "search": ordinary[:32], "unseen": ordinary[32:]}


def _error(model: bytes, reference: bytes, samples: list[np.ndarray]) -> float:
    return output_error(model, samples, collect_outputs(reference, samples), None)


def test_an_outlier_range_is_narrowed_and_unseen_outputs_move_closer(models: dict) -> None:
    narrowed, selection = select_ranges(models["float"], models["int8"], models["search"], lambda _: None)
    assert selection.narrowed >= 1 and selection.error_after < 0.7 * selection.error_before
    before = _error(models["int8"], models["float"], models["unseen"])
    after = _error(narrowed, models["float"], models["unseen"])
    assert after < 0.7 * before, (before, after)


def test_narrowed_model_passes_the_reference_kernels_checks_and_keeps_tied_scales(models: dict) -> None:
    narrowed, _ = select_ranges(models["float"], models["int8"], models["search"], lambda _: None)
    interpreter = reference_interpreter(narrowed)  # refuses a bias scale != input scale x weight scale
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], models["unseen"][0])
    interpreter.invoke()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    tied = [op for op in interpreter._get_ops_details() if op["op_name"] in SAME_SCALE_OPS]
    assert {op["op_name"] for op in tied} >= {"MAX_POOL_2D", "RESHAPE"}
    for op in tied:
        source, result = tensors[int(op["inputs"][0])], tensors[int(op["outputs"][0])]
        assert source["quantization"] == result["quantization"], op["op_name"]


def test_a_budget_round_reuses_the_first_choice_without_searching(models: dict) -> None:
    chosen: dict[str, float] = {}
    first, searched = select_ranges(models["float"], models["int8"], models["search"], lambda _: None, chosen=chosen)
    assert chosen and all(factor < 1 for factor in chosen.values())
    steps: list[str] = []
    again, reused = select_ranges(models["float"], models["int8"], models["search"], steps.append, chosen=chosen)
    assert again == first and reused.narrowed == searched.narrowed
    assert not steps, "no search: each factor is applied as chosen"


def test_quantize_applies_range_selection_when_asked_and_records_it(keras_models: dict, crops: dict, tmp_path) -> None:
    from edgekit.formats import Format
    from edgekit.quantize.api import QuantizeOptions, quantize_model

    reports = {
        flag: quantize_model(
            keras_models["keras"],
            QuantizeOptions(
                format=Format.TFLITE,
                calib=crops["calib"],
                val=crops["val"],
                calib_count=16,
                range_selection=flag,
                output=tmp_path / f"{flag}.tflite",
            ),
        )
        for flag in (False, True)
    }
    assert reports[False].settings["range_selection"] is None
    selection = reports[True].settings["range_selection"]
    assert selection["tried"] >= 3 and selection["error_after"] <= selection["error_before"]
