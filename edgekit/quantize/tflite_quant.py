"""TFLite quantization with the TFLite converter: full int8 (representative dataset), dynamic range,
fp16; layers kept in float through QuantizationDebugger's denylist; per-layer error statistics."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekit.convert.onnx_names import known_layer, scope_parts
from edgekit.convert.tflite_converter import run_converter
from edgekit.fsutil import quiet_native_output
from edgekit.loaders.keras_loader import import_tf
from edgekit.quantize.common import LayerDrift

Dataset = Callable[[], Iterator[list[np.ndarray]]]


class TargetSpec(Protocol):
    """The converter's target_spec, as edgekit sets it."""

    supported_ops: list[object]
    supported_types: list[object]


class Converter(Protocol):
    """What edgekit sets and calls on a tf.lite.TFLiteConverter (TensorFlow is imported lazily, so the
    class itself cannot be named in a signature)."""

    optimizations: list[object]
    representative_dataset: Dataset | None
    target_spec: TargetSpec
    inference_input_type: object
    inference_output_type: object
    experimental_mlir_quantizer: bool
    _experimental_calibrate_only: bool
    _experimental_disable_per_channel: bool

    def convert(self) -> bytes:
        """The flatbuffer."""
        ...


def configure(
    converter: Converter, scheme: str, dataset: Dataset | None, io_dtype: str, allow_float: bool
) -> Converter:
    """Set the converter's quantization options; returns it."""
    tf = import_tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif scheme == "int8":
        converter.representative_dataset = dataset
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + ([tf.lite.OpsSet.TFLITE_BUILTINS] if allow_float else [])
        converter.target_spec.supported_ops = ops
        if io_dtype != "float":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io_dtype)
    return converter


def quantize_tflite(
    make_converter: Callable[[], Converter],
    scheme: str,
    dataset: Dataset | None,
    io_dtype: str = "float",
    exclude: list[str] | None = None,
    calibration: Calibration | None = None,
) -> bytes:
    """A quantized TFLite flatbuffer; `exclude` names tensors whose ops stay in float (float IO only),
    quantized from `calibration` when given (the same bytes as a converter run on its dataset)."""
    if exclude and io_dtype != "float":
        raise ValueError("layers can stay float only in a float-IO model")
    if exclude:
        return (calibration or Calibration(make_converter, dataset)).quantize(exclude)
    converter = configure(make_converter(), scheme, dataset, io_dtype, allow_float=False)
    return run_converter(converter.convert, "TFLite quantization")


class Calibration:
    """One calibration run of the TFLite converter (a float model carrying its range statistics),
    quantized again for each set of layers kept in float. Calibrating is the slow part (about 10 s for
    MobileNetV2 on 100 images), quantizing takes 0.2 s, and the result is byte for byte what
    QuantizationDebugger's denylist gives from a fresh converter run (checked in the tests)."""

    def __init__(self, make_converter: Callable[[], Converter], dataset: Dataset | None) -> None:
        self._make_converter, self._dataset = make_converter, dataset
        self._per_channel_off = False

    @functools.cached_property
    def model(self) -> bytes:
        """The calibrated float model."""
        converter = configure(self._make_converter(), "int8", self._dataset, "float", allow_float=True)
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True  # what QuantizationDebugger does
        self._per_channel_off = bool(converter._experimental_disable_per_channel)
        return run_converter(converter.convert, "TFLite calibration")

    def quantize(self, exclude: list[str], numeric_verify: bool = False) -> bytes:
        """The float-IO int8 model with the ops of `exclude` in float (with `numeric_verify`: the
        debugger's instrumented model, for per-layer statistics)."""
        import_tf()
        from tensorflow.lite.python import convert

        calibrated = self.model
        return run_converter(
            lambda: convert.mlir_quantize(
                calibrated,
                disable_per_channel=self._per_channel_off,
                fully_quantize=False,
                enable_numeric_verify=numeric_verify,
                denylisted_nodes=list(exclude),
            ),
            "TFLite quantization",
        )


def layer_drift(calibration: Calibration, dataset: Dataset, names: dict[str, str] | None = None) -> list[LayerDrift]:
    """Per-layer quantization error (RMSE / scale, the TFLite debugger's measure), worst first.

    `names` maps TF name scopes back to source-model layer names (the ONNX route's scopes)."""
    tf = import_tf()
    debug_model = calibration.quantize([], numeric_verify=True)
    with quiet_native_output():
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=dataset
        )
        debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
    layers = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale, mse = float(row.get("scale") or 0), float(row.get("mean_squared_error") or 0)
        if scale <= 0:
            continue
        name = row["tensor_name"]
        source = source_layer(name, names or {})
        layers.append(LayerDrift(name, source, row.get("op_name", ""), None, float(np.sqrt(mse) / scale)))
    return sorted(layers, key=lambda layer: -layer.score)


def source_layer(tensor_name: str, names: dict[str, str]) -> str:
    """The source layer a TFLite tensor comes from: the deepest part of its name scope that is a known
    layer ('model/mobilenetv2/block_1_expand_BN/batchnorm/add_1' -> 'block_1_expand_BN', not the op
    scope 'batchnorm'), else the part before the op name."""
    found = known_layer(tensor_name, names)
    if found is not None:
        return found
    parts = scope_parts(tensor_name)
    return parts[-2] if len(parts) >= 2 else (parts[0] if parts else tensor_name)


SOFTMAX_CHAIN = ("SOFTMAX", "RESHAPE", "SQUEEZE", "DEQUANTIZE")


def final_softmax(float_model: bytes) -> list[str]:
    """The tensor names (as the QuantizationDebugger's denylist takes them) of the softmax at output 0
    of a float TFLite model and the reshapes after it; empty when the output is not a softmax's."""
    from edgekit.runtimes.tflite import find_interpreter

    _, interpreter_class, _ = find_interpreter()
    interpreter = interpreter_class(model_content=float_model)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    producer = {int(out): op for op in interpreter._get_ops_details() for out in op["outputs"]}
    op = producer.get(int(interpreter.get_output_details()[0]["index"]))
    chain = []
    while op is not None and op["op_name"] in SOFTMAX_CHAIN:
        chain.append(names[int(op["outputs"][0])])
        if op["op_name"] == "SOFTMAX":
            return chain
        op = producer.get(int(op["inputs"][0]))
    return []


def float_ops(path: Path, kept: list[str]) -> list[str]:
    """The compute ops of a quantized TFLite file that run on float input although their output is not
    one of the `kept` tensors (softmax, denylisted layers); QUANTIZE/DEQUANTIZE do not count."""
    from edgekit.runtimes.tflite import read_graph

    graph = read_graph(path)
    wanted = set(kept)
    unexpected = []
    for op in graph.ops:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not len(op["inputs"]):
            continue
        output = graph.tensors[int(op["outputs"][0])]["name"]
        if graph.tensors[int(op["inputs"][0])]["dtype"] == np.float32 and output not in wanted:
            unexpected.append(f"{op['op_name']} ({output.split(';')[0]})")
    return unexpected
