"""The ONNX -> TFLite translator, operator by operator, against onnxruntime on the same input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.artifact import ModelArtifact
from edgekit.convert.onnx_to_tflite import onnx_to_tflite
from edgekit.errors import UnsupportedRoute
from edgekit.formats import Format
from edgekit.runtimes import open_runner

RNG = np.random.default_rng(0)
X_SHAPE = [1, 4, 9, 11]  # odd sizes expose padding and layout mistakes


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _model(
    nodes: list[onnx.NodeProto],
    weights: dict[str, np.ndarray],
    out_shape: list[int] | None = None,
    in_shape: list[int] = X_SHAPE,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _compare(model: onnx.ModelProto, tmp_path: Path) -> float:
    source, target = tmp_path / "m.onnx", tmp_path / "m.tflite"
    onnx.save(model, str(source))
    onnx_to_tflite(source, target, None)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(shape).astype(np.float32)
    with (
        open_runner(ModelArtifact(source, Format.ONNX)) as ref,
        open_runner(ModelArtifact(target, Format.TFLITE)) as got,
    ):
        expected = ref.infer([x])[0]
        feed = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
        actual = got.infer([feed])[0]  # a 4-D output keeps ONNX's NCHW layout
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max())


CASES = {
    "conv_same_stride2": (
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])],
        {"w": _w(6, 4, 3, 3), "b": _w(6)},
    ),
    "conv_asymmetric_pads": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 2, 1, 0])], {"w": _w(5, 4, 3, 3)}),
    "conv_dilated": (
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[2, 2, 2, 2], dilations=[2, 2])],
        {"w": _w(3, 4, 3, 3)},
    ),
    "conv_grouped": ([helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])], {"w": _w(6, 2, 3, 3)}),
    "depthwise_multiplier2": (
        [helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1, 1, 1, 1])],
        {"w": _w(8, 1, 3, 3)},
    ),
    "batchnorm_hardswish": (
        [
            helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["t"]),
            helper.make_node("HardSwish", ["t"], ["y"]),
        ],
        {"g": _w(4), "be": _w(4), "m": _w(4), "v": np.abs(_w(4)) + 0.5},
    ),
    "silu_broadcast_add": (
        [
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("Mul", ["x", "s"], ["t"]),
            helper.make_node("Add", ["t", "c"], ["y"]),
        ],
        {"c": _w(1, 4, 1, 1)},
    ),
    "maxpool_padded": (
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        {},
    ),
    "maxpool_ceil_mode": (  # 9x11 -> 5x6 with ceil_mode, 4x5 without: the end windows are partial
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
        {},
    ),
    "avgpool_ceil_mode_same_size": (  # SqueezeNet's case: ceil_mode that changes no output size
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
        {},
    ),
    "split_channels_then_concat": (  # ShuffleNetV2's channel split (opset 13: sizes as an input)
        [
            helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
            helper.make_node("Relu", ["b"], ["r"]),
            helper.make_node("Concat", ["r", "a"], ["y"], axis=1),
        ],
        {"sizes": np.array([1, 3], np.int64)},
    ),
    "sqrt_of_mean_square": (  # a hand-written LayerNorm's variance and root
        [
            helper.make_node("Mul", ["x", "x"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=1),
            helper.make_node("Add", ["ms", "eps"], ["v"]),
            helper.make_node("Sqrt", ["v"], ["root"]),
            helper.make_node("Div", ["x", "root"], ["y"]),
        ],
        {"eps": np.array([1e-5], np.float32)},
    ),
    "gelu_exact": (  # torch's nn.GELU(): x * 0.5 * (1 + erf(x / sqrt 2))
        [
            helper.make_node("Div", ["x", "root2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["p"]),
            helper.make_node("Mul", ["x", "p"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ],
        {
            "root2": np.array([2**0.5], np.float32),
            "one": np.array([1.0], np.float32),
            "half": np.array([0.5], np.float32),
        },
    ),
    "avgpool_count_pad": (
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)],
        {},
    ),
    "flatten_spatial": ([helper.make_node("Flatten", ["x"], ["y"])], {}),
    "reshape_transpose": (
        [helper.make_node("Reshape", ["x", "s"], ["t"]), helper.make_node("Transpose", ["t"], ["y"], perm=[0, 2, 1])],
        {"s": np.array([1, 4, 99], np.int64)},
    ),
    "concat_channels_softmax": (
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Concat", ["x", "r"], ["c"], axis=1),
            helper.make_node("Softmax", ["c"], ["y"], axis=1),
        ],
        {},
    ),
    "reduce_mean_no_keepdims": ([helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)], {}),
    "clip_pad_reflect": (
        [
            helper.make_node("Pad", ["x", "p"], ["t"], mode="reflect"),
            helper.make_node("Clip", ["t", "lo", "hi"], ["y"]),
        ],
        {
            "p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
            "lo": np.array(-0.5, np.float32),
            "hi": np.array(0.5, np.float32),
        },
    ),
    "gemm_head": (
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1),
        ],
        {"w": _w(7, 4), "b": _w(7)},
    ),
    # UNet's decoder: nn.Upsample (nearest: asymmetric + floor; bilinear: half_pixel or align_corners)
    "resize_nearest_scales": (
        [
            helper.make_node(
                "Resize",
                ["x", "", "sc"],
                ["y"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    ),
    "resize_bilinear_half_pixel_sizes": (
        [
            helper.make_node(
                "Resize", ["x", "", "", "sz"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"
            )
        ],
        {"sz": np.array([1, 4, 20, 17], np.int64)},
    ),
    "resize_bilinear_align_corners": (
        [
            helper.make_node(
                "Resize", ["x", "", "sc"], ["y"], mode="linear", coordinate_transformation_mode="align_corners"
            )
        ],
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    ),
    "conv_transpose_stride2_padded": (  # nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
        [
            helper.make_node(
                "ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
            )
        ],
        {"w": _w(4, 3, 3, 3), "b": _w(3)},
    ),
    "conv_transpose_2x2_upsampling": (  # UNet's up-convolution: kernel 2, stride 2
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        {"w": _w(4, 6, 2, 2)},
    ),
    "slice_channels_and_strided_width": (
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
        {
            "st": np.array([1, 1], np.int64),
            "en": np.array([3, 2**62], np.int64),
            "ax": np.array([1, 3], np.int64),
            "sp": np.array([1, 2], np.int64),
        },
    ),
    "gather_channels": ([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], {"i": np.array([2, 0], np.int64)}),
    "attention_over_tokens": (  # ViT's self-attention: tokens from a feature map, q k^T, softmax, @ v
        [
            helper.make_node("Reshape", ["x", "s"], ["f"]),
            helper.make_node("Transpose", ["f"], ["t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["t", "wq"], ["q"]),
            helper.make_node("MatMul", ["t", "wk"], ["k"]),
            helper.make_node("MatMul", ["t", "wv"], ["v"]),
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["q", "kt"], ["a"]),
            helper.make_node("Softmax", ["a"], ["p"], axis=-1),
            helper.make_node("MatMul", ["p", "v"], ["o"]),
            helper.make_node("Gather", ["o", "zero"], ["y"], axis=1),  # the class token's row
        ],
        {
            "s": np.array([1, 4, 99], np.int64),
            "wq": _w(4, 8) / 2,
            "wk": _w(4, 8) / 2,
            "wv": _w(4, 8),
            "zero": np.array(0, np.int64),
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_operator_matches_onnxruntime(case: str, tmp_path: Path) -> None:
    nodes, weights = CASES[case]
    assert _compare(_model(nodes, weights), tmp_path) < 1e-4


def test_resize_modes_tflite_lacks_are_refused_by_name(tmp_path: Path) -> None:
    node = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="cubic", name="up")
    onnx.save(_model([node], {"sc": np.array([1, 1, 2, 2], np.float32)}), str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedRoute, match="ONNX Resize up uses mode=cubic"):
        onnx_to_tflite(tmp_path / "m.onnx", tmp_path / "m.tflite", None)


def test_unknown_operator_is_named(tmp_path: Path) -> None:
    model = _model([helper.make_node("Hardmax", ["x"], ["y"], name="my_hardmax")], {})
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedRoute, match=r"ONNX operator Hardmax \(node 'my_hardmax'\)"):
        onnx_to_tflite(tmp_path / "m.onnx", tmp_path / "m.tflite", None)


def test_dynamic_spatial_dims_need_an_input_shape(tmp_path: Path) -> None:
    from edgekit.errors import BadInput

    model = _model([helper.make_node("Relu", ["x"], ["y"])], {}, in_shape=[1, 3, "h", "w"])
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(BadInput, match="--input-shape"):
        onnx_to_tflite(tmp_path / "m.onnx", tmp_path / "m.tflite", None)
    onnx_to_tflite(tmp_path / "m.onnx", tmp_path / "m.tflite", [1, 3, 16, 16])
    assert (tmp_path / "m.tflite").stat().st_size > 0


def test_average_pool_whose_ceil_mode_changes_the_size_is_refused_by_name(tmp_path: Path) -> None:
    """A partial end window of an average would divide by a count TFLite cannot express: refused (exit 6)."""
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, name="ap")
    onnx.save(_model([node], {}), str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedRoute, match="AveragePool ap uses ceil_mode=1 where it changes the output size"):
        onnx_to_tflite(tmp_path / "m.onnx", tmp_path / "m.tflite", None)


def test_layer_norm_over_tokens_matches_onnxruntime(tmp_path: Path) -> None:
    """ViT's LayerNormalization over the channels of [batch, tokens, channels] (opset 17)."""
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-6)
    model = _model([node], {"g": _w(11), "b": _w(11)}, in_shape=[1, 6, 11])
    assert _compare(model, tmp_path) < 1e-4


def test_an_nhwc_onnx_input_is_taken_as_it_is(tmp_path: Path) -> None:
    """tf2onnx models take NHWC and transpose to NCHW before their first conv: the TFLite model takes the
    same NHWC input, and that transpose costs nothing (no TRANSPOSE op is left before the conv)."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    model = _model(nodes, {"w": _w(5, 3, 3, 3)}, in_shape=[1, 9, 11, 3])
    source, target = tmp_path / "m.onnx", tmp_path / "m.tflite"
    onnx.save(model, str(source))
    inputs, _outputs = onnx_to_tflite(source, target, None)
    assert inputs[0].shape == [1, 9, 11, 3] and inputs[0].layout == "NHWC"
    x = RNG.standard_normal((1, 9, 11, 3)).astype(np.float32)
    with (
        open_runner(ModelArtifact(source, Format.ONNX)) as ref,
        open_runner(ModelArtifact(target, Format.TFLITE)) as got,
    ):
        assert float(np.abs(got.infer([x])[0] - ref.infer([x])[0]).max()) < 1e-4
    from edgekit.runtimes.tflite import read_graph

    ops = [op["op_name"] for op in read_graph(target).ops]
    assert "TRANSPOSE" not in ops and "CONV_2D" in ops
