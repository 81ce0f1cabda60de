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


def qdq_layer(
    op: str, weight: np.ndarray, input_shape: list[int], output_step: float = 2048.0, **attrs: object
) -> onnx.ModelProto:
    """One int8 Conv or Gemm between uint8 QDQ pairs (input step 1), with int8 weight values `weight` at
    step 1: onnxruntime fuses it into QLinearConv or QGemm."""
    import onnx
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    rows = weight.shape[0] if op == "Conv" else weight.shape[1]
    output_shape = [1, rows, *input_shape[2:]] if op == "Conv" else [1, rows]  # stride 1, "same" padding
    initializers = [
        nh.from_array(np.array(1.0, np.float32), "s_in"),
        nh.from_array(np.array(0, np.uint8), "z_in"),
        nh.from_array(weight.astype(np.int8), "w_q"),
        nh.from_array(np.ones(rows, np.float32), "s_w"),
        nh.from_array(np.zeros(rows, np.int8), "z_w"),
        nh.from_array(np.array(output_step, np.float32), "s_out"),
        nh.from_array(np.array(0, np.uint8), "z_out"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["wd"], axis=0 if op == "Conv" else 1),
        helper.make_node(op, ["xd", "wd"], ["y"], name="layer", **attrs),
        helper.make_node("QuantizeLinear", ["y", "s_out", "z_out"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s_out", "z_out"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def saturation_cases() -> list[tuple[str, onnx.ModelProto, np.ndarray, bool]]:
    """Layers with two weights of 127 (or a depthwise one of all 127s) placed so that onnxruntime's
    AVX2 kernels do or do not sum them in one VPMADDUBSW pair, each with an input of 255s and whether
    edgekit.quantize.weight_pairs says the layer can saturate: name, model, input, prediction."""
    from edgekit.quantize.weight_pairs import conv_weight_pairs, gemm_pairs, violations

    cases = []
    for channels, first, second in [(4, (0, 0), (1, 0)), (4, (1, 0), (2, 0)), (4, (3, 0), (0, 1)), (4, (2, 4), (3, 4)),
                                    (3, (0, 0), (1, 0)), (3, (2, 0), (0, 1)), (3, (0, 0), (0, 1)), (3, (1, 3), (2, 3)),
                                    (5, (4, 0), (0, 1)), (5, (3, 0), (4, 0)), (6, (4, 2), (5, 2))]:  # fmt: skip
        weight = np.zeros((2, channels, 3, 3))
        for channel, position in (first, second):
            weight[1, channel, position // 3, position % 3] = 127
        model = qdq_layer("Conv", weight, [1, channels, 5, 5], pads=[1, 1, 1, 1])
        predicted = violations(weight.reshape(2, -1), conv_weight_pairs(weight.shape, 1)) > 0
        cases.append((f"conv{channels}-c{first[0]}p{first[1]}+c{second[0]}p{second[1]}", model, predicted))
    for sign in (1, -1):
        weight = np.full((16, 1, 3, 3), 127 * sign)
        model = qdq_layer("Conv", weight, [1, 16, 5, 5], group=16, pads=[1, 1, 1, 1])
        cases.append((f"depthwise{sign:+d}", model, conv_weight_pairs(weight.shape, 16) is not None))
    for places in ((0, 1), (1, 2), (2, 3), (0, 3)):
        weight = np.zeros((6, 3))  # K x N, transB=0
        weight[list(places), 2] = 127
        model = qdq_layer("Gemm", weight, [1, 6])
        cases.append((f"gemm-k{places[0]}+k{places[1]}", model, violations(weight.T, gemm_pairs(6)) > 0))
    return [(name, model, np.full(_input_shape(model), 255.0, np.float32), p) for name, model, p in cases]


def _input_shape(model: onnx.ModelProto) -> list[int]:
    """The graph input's static shape."""
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
