"""The model zoo (tests/zoo_models.py): the families users bring beyond the CNNs of the real models, as
small faithful plain-torch versions (torchvision does not install here) and stock Keras applications.
Each converts to ONNX and to TFLite with parity against its source on real-photo crops, and quantizes;
an int8 model slower than its fp32 says so. `make bench-zoo` prints the README's table of the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.formats import Format
from edgekit.preprocess import PreprocessOverrides
from tests.zoo_models import (
    KERAS_APPLICATIONS,
    KERAS_HEAVY,
    KERAS_HEAVY_INT8,
    KERAS_SIZE,
    SIZE,
    TORCH_FAMILIES,
    save_keras_application,
    save_torch_family,
)

pytestmark = pytest.mark.slow


def _calibration_and_validation(folder: Path, size: int, seed: int) -> dict[str, Path]:
    """48 calibration and 48 validation crops of the real photos at `size`, disjoint seeds."""
    from edgekit.samples import write_crops

    for offset, part in enumerate(("calib", "val")):
        write_crops(folder / part, 48, seed=seed + offset, size=size)
    return {"calib": folder / "calib", "val": folder / "val"}


@pytest.fixture(scope="module")
def zoo_crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Crops at the torch families' input size."""
    return _calibration_and_validation(tmp_path_factory.mktemp("zoo-crops"), SIZE, seed=11)


@pytest.mark.parametrize("family", list(TORCH_FAMILIES))
def test_torch_family_converts_to_onnx_and_tflite_and_quantizes(
    family: str, zoo_crops: dict[str, Path], tmp_path: Path
) -> None:
    """Both conversions keep parity (max |Δ| <= 1e-4, 100% top-1); the default int8 model is written,
    and when it runs slower than fp32 on this host the report and --json say so."""
    from edgekit.quantize.api import QuantizeOptions, quantize_model

    source = save_torch_family(family, tmp_path)
    preprocess = PreprocessOverrides(preset="unit", size=(SIZE, SIZE))
    for target in (Format.ONNX, Format.TFLITE):
        report = convert_model(
            source, ConvertOptions(target, output=tmp_path / f"m.{target.value}", preprocess=preprocess)
        )
        parity = report.parity.outputs[0]
        assert parity.max_abs_diff <= 1e-4 and parity.top1_agreement == 1.0, f"{family} -> {target.value}"
    options = QuantizeOptions(calib=zoo_crops["calib"], calib_count=32, val=zoo_crops["val"], val_count=48,
                              output=tmp_path / "m.int8.onnx", preprocess=preprocess)  # fmt: skip
    quantized = quantize_model(source, options)
    assert quantized.output is not None and quantized.output.exists() and quantized.validation.images == 48
    slower = quantized.quant_ms >= quantized.float_ms
    assert quantized.to_dict()["slower_than_float"] == slower
    assert slower == any("the float model's speed on this host" in w for w in quantized.warnings)


@pytest.fixture(scope="module")
def keras_zoo_crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Crops at the Keras applications' input size."""
    return _calibration_and_validation(tmp_path_factory.mktemp("keras-zoo-crops"), KERAS_SIZE, seed=13)


@pytest.mark.parametrize(
    "application",
    [pytest.param(name, marks=pytest.mark.heavy) if name in KERAS_HEAVY_INT8 else name for name in KERAS_APPLICATIONS],
)
def test_keras_application_converts_to_onnx_and_tflite_and_quantizes(
    application: str, keras_zoo_crops: dict[str, Path], tmp_path: Path
) -> None:
    """Stock keras.applications (0-255 inputs): both conversions keep parity and the default int8 TFLite
    model is written; slower-than-fp32 int8 says so."""
    from edgekit.quantize.api import QuantizeOptions, quantize_model

    source = save_keras_application(application, tmp_path)
    preprocess = PreprocessOverrides(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, size=(KERAS_SIZE, KERAS_SIZE))
    for target in (Format.ONNX, Format.TFLITE):
        report = convert_model(
            source, ConvertOptions(target, output=tmp_path / f"m.{target.value}", preprocess=preprocess)
        )
        parity = report.parity.outputs[0]
        assert parity.max_abs_diff <= 1e-4 and parity.top1_agreement == 1.0, f"{application} -> {target.value}"
    options = QuantizeOptions(calib=keras_zoo_crops["calib"], calib_count=32, val=keras_zoo_crops["val"],
                              val_count=48, output=tmp_path / "m.int8.tflite", preprocess=preprocess)  # fmt: skip
    quantized = quantize_model(source, options)
    assert quantized.output is not None and quantized.output.exists() and quantized.target == "tflite"
    slower = quantized.quant_ms >= quantized.float_ms
    assert slower == any("the float model's speed on this host" in w for w in quantized.warnings)


def _keras_stock_layers(path: Path) -> Path:
    """The Keras layers that broke Keras -> ONNX in stock applications, in one small net: EfficientNet's
    Normalization (its mean and variance are captured constants), ConvNeXt's grouped Conv2D (Keras runs
    it under XLA) and exact GELU (TensorFlow's Erfc)."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.050, 0.051])(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", groups=4)(x)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    return path


@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_keras_normalization_grouped_conv_and_gelu_convert_with_parity(target: Format, tmp_path: Path) -> None:
    """tf2onnx used to leave Normalization's constants as missing graph inputs, a StatefulPartitionedCall
    for the grouped convolution and an Erfc node; each is now an ONNX graph onnxruntime runs, with parity."""
    import onnx

    source = _keras_stock_layers(tmp_path / "stock.keras")
    options = ConvertOptions(target, output=tmp_path / f"stock.{target.value}", preprocess=PreprocessOverrides(
        preset="unit"))  # fmt: skip
    report = convert_model(source, options)
    output = report.parity.outputs[0]
    assert report.parity.passed and output.max_abs_diff <= 1e-4 and output.top1_agreement == 1.0
    if target is Format.ONNX:
        model = onnx.load(str(report.output))
        ops = {node.op_type for node in model.graph.node}
        assert len(model.graph.input) == 1 and "Erf" in ops and not any("Call" in op for op in ops)
        assert any(a.name == "group" and a.i == 4 for n in model.graph.node if n.op_type == "Conv" for a in n.attribute)


# Measured at 30% (this host, 2026-12-02): MobileNetV2 53% of the MACs left, MobileNetV3Small 50%,
# EfficientNetB0 72% (its squeeze-excite Reshape keeps the expansions whole), EfficientNetV2B0 60%,
# ResNet50V2 50%, DenseNet121 73% (Concatenate keeps the dense blocks' inputs whole), ConvNeXtTiny
# 71% (LayerNorm keeps the stream whole; the MLP's hidden width is pruned); NASNetMobile has no
# channel space (separable convolutions and concatenations) and is refused.
PRUNE_REFUSED = {"NASNetMobile"}


@pytest.mark.parametrize(
    "application",
    [pytest.param(name, marks=pytest.mark.heavy) if name in KERAS_HEAVY else name for name in KERAS_APPLICATIONS],
)
def test_keras_application_prunes_structurally_and_converts(application: str, tmp_path: Path) -> None:
    """Channel-space pruning on stock applications (residual Adds, squeeze-excite Multiply, hard-swish
    arithmetic, nested Sequential stems): 30% leaves at most 80% of the MACs and the pruned model
    converts to TFLite with parity; a model with nothing it can follow is refused with the reason."""
    from edgekit.errors import BadInput
    from edgekit.prune import PruneOptions, prune_model

    source = save_keras_application(application, tmp_path)
    options = PruneOptions(amount=0.3, output=tmp_path / "p30.keras")
    if application in PRUNE_REFUSED:
        with pytest.raises(BadInput, match="no channel that only convolutions produce"):
            prune_model(source, options)
        return
    report = prune_model(source, options)
    assert report.macs_after < 0.8 * report.macs_before
    preprocess = PreprocessOverrides(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, size=(KERAS_SIZE, KERAS_SIZE))
    converted = convert_model(report.output, ConvertOptions(Format.TFLITE, output=tmp_path / "p30.tflite",
                                                           preprocess=preprocess))  # fmt: skip
    assert converted.parity.passed
