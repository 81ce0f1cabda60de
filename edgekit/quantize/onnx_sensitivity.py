"""Which layers to keep in float, ranked by their effect on the model's *output*: for each weighted
layer of the int8 model, the same model with only that layer in float is run on a few images, and the
layer's score is the share of the output error (mean squared difference from the float model's
output) that goes away. Local measures (the SQNR a layer loses) picked layers on MobileNetV2 whose
float versions did not move the output; this measures what the drift budget is judged on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.quantize.onnx_bias import named_outputs
from edgekit.quantize.onnx_quant import input_channels, per_channel_copy, scalar_params

if TYPE_CHECKING:
    import onnx


def output_effect(
    float_path: Path,
    quant_path: Path,
    feeds: list[dict[str, np.ndarray]],
    candidates: list[str],
    progress: Callable[[str], None] = lambda _: None,
    exact: bool = False,
) -> dict[str, float]:
    """For each node in `candidates` (Conv/Gemm names of the int8 model): the share of the int8
    model's output error on `feeds` removed by running that one node in float (1 = all of it); `exact`
    as in onnx_bias.named_outputs."""
    import onnx

    float_model, quant_model = onnx.load(str(float_path)), onnx.load(str(quant_path))
    output = float_model.graph.output[0].name
    reference = [o[0] for o in named_outputs(float_model, [output], feeds)]
    base = _error(quant_model, reference, feeds, exact)
    effects = {}
    for index, name in enumerate(candidates):
        progress(f"ranking layers by their effect on the output: {index + 1} of {len(candidates)}")
        variant = _with_float_layer(quant_model, float_model, name)
        if variant is not None:
            effects[name] = (base - _error(variant, reference, feeds, exact)) / max(base, 1e-20)
    return effects


def _error(
    model: onnx.ModelProto, reference: list[np.ndarray], feeds: list[dict[str, np.ndarray]], exact: bool
) -> float:
    """Mean squared difference of the model's first output from the float model's."""
    name = model.graph.output[0].name
    outputs = [o[0] for o in named_outputs(model, [name], feeds, exact=exact)]
    return float(np.mean([np.mean((o.astype(np.float64) - r) ** 2) for o, r in zip(outputs, reference)]))


def _with_float_layer(quant: onnx.ModelProto, float_model: onnx.ModelProto, name: str) -> onnx.ModelProto | None:
    """A copy of the int8 model whose node `name` uses the float model's weights and bias, fed through
    a per-channel DequantizeLinear so that onnxruntime does not quantize it again; None if the node
    has no float twin."""
    import onnx

    twin = next((n for n in float_model.graph.node if n.name == name), None)
    float_inits = {i.name: i for i in float_model.graph.initializer}
    if twin is None or any(i not in float_inits for i in twin.input[1:]):
        return None
    model = onnx.ModelProto()
    model.CopyFrom(quant)
    graph = model.graph
    node = next(n for n in graph.node if n.name == name)
    for position, source in enumerate(twin.input[1:], start=1):
        copy = onnx.TensorProto()
        copy.CopyFrom(float_inits[source])
        copy.name = f"{name}_float_{position}"
        graph.initializer.append(copy)
        node.input[position] = copy.name
    initializers = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    dq = producer.get(node.input[0])
    channels = input_channels(node, initializers)
    if dq is not None and dq.op_type == "DequantizeLinear" and channels and scalar_params(dq, initializers):
        per_channel = per_channel_copy(dq, channels, f"{name}_float_input", initializers, graph)
        position = list(graph.node).index(node)
        graph.node.insert(position, per_channel)
        node.input[0] = per_channel.output[0]
    return model
