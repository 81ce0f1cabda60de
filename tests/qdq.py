"""Reading a QDQ ONNX model's roles by structure, since edgekit shortens the quantizer's names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

ROLES = {1: "weight", 2: "bias"}


def operand_roles(model: onnx.ModelProto) -> dict[str, str]:
    """Initializer name -> "weight" or "bias", for the quantized initializers that a Conv/Gemm reads
    through a DequantizeLinear at its weight (input 1) or bias (input 2)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {init.name for init in model.graph.initializer}
    roles = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "ConvTranspose", "MatMul"):
            continue
        for position, role in ROLES.items():
            dq = producer.get(node.input[position]) if len(node.input) > position else None
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in initializers:
                roles[dq.input[0]] = role
    return roles


def changed_operands(
    first: onnx.ModelProto, second: onnx.ModelProto
) -> dict[str, tuple[str | None, np.ndarray, np.ndarray]]:
    """Initializers whose values differ between two models of one graph (same ops reading the same
    names, asserted): name -> (its role in `first`, value in `first`, value in `second`)."""
    from onnx import numpy_helper

    assert [(n.op_type, list(n.input)) for n in first.graph.node] == [
        (n.op_type, list(n.input)) for n in second.graph.node
    ]
    before = {i.name: numpy_helper.to_array(i) for i in first.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in second.graph.initializer}
    roles = operand_roles(first)
    return {
        name: (roles.get(name), value, after[name])
        for name, value in before.items()
        if not np.array_equal(value, after[name])
    }
