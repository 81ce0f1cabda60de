"""ONNX graph facts: parameters from initializers, MACs of Conv/Gemm/MatMul from inferred shapes."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx
    from onnx import NodeProto

    from edgekit.artifact import ModelArtifact
    from edgekit.inspectors import GraphFacts
    from edgekit.runtimes import Runner


def inspect_graph(artifact: ModelArtifact, runner: Runner) -> GraphFacts:
    """Read parameters, MACs, ops and weight dtypes of an ONNX file (needs the onnx package)."""
    from edgekit.inspectors import GraphFacts

    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:  # a runtime-only (device) install: onnxruntime alone cannot list weights
        note = 'parameters, MACs and ops need the onnx package: pip install "edgekit[onnx]"'
        return GraphFacts(params=None, note=note)

    model = onnx.load(str(artifact.path))
    with contextlib.suppress(Exception):  # without shapes, MACs of unshaped nodes count as 0
        model = shape_inference.infer_shapes(model)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            weights[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shapes = _value_shapes(model)
    facts = GraphFacts(ops=Counter(n.op_type for n in model.graph.node if n.op_type != "Constant"))
    for array in weights.values():
        if array.dtype.kind in "fiu" and array.size > 1 and array.dtype != np.int64:
            facts.params += int(array.size)
            facts.weight_dtypes[array.dtype.name] += int(array.size)
    facts.macs = sum(_node_macs(node, weights, shapes) for node in model.graph.node)
    return facts


def _value_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for info in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    return shapes


def _weight_shape(name: str, weights: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> list[int] | None:
    if name in weights:
        return list(weights[name].shape)
    return shapes.get(name)


def _node_macs(node: NodeProto, weights: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        weight = _weight_shape(node.input[3 if node.op_type == "QLinearConv" else 1], weights, shapes)
        if out and weight:
            return int(np.prod(out)) * int(np.prod(weight[1:]))
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        b = _weight_shape(node.input[3 if node.op_type == "QLinearMatMul" else 1], weights, shapes)
        if out and b:
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            return int(np.prod(out)) * int(b[-1] if transposed else b[-2] if len(b) > 1 else b[0])
    return 0
