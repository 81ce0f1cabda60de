"""Weight rounding (GPTQ) and layers kept in float, on the real onnxruntime and TFLite runtimes: the
rounding moves only int8 weight values and lowers each layer's output error; a layer kept in float
really runs in float when onnxruntime loads the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.onnx_rounding import Autocorrelation, gptq_round
from tests.qdq import changed_operands


def _output_error(weight: np.ndarray, values: np.ndarray, scale: np.ndarray, inputs: np.ndarray) -> float:
    return float(np.sum(((weight - values * scale[:, None]) @ inputs.T) ** 2))


def test_gptq_rounding_beats_nearest_rounding_on_correlated_inputs() -> None:
    """The layer's output error (not each weight's) is what it lowers: with inputs whose features are
    correlated, as a convolution's neighbouring pixels are, it is clearly below nearest rounding's."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(16, 27))
    inputs = rng.normal(size=(4000, 27)) @ rng.normal(size=(27, 27)) + 0.5
    scale = np.abs(weight).max(axis=1) / 127
    nearest = np.clip(np.round(weight / scale[:, None]), -128, 127)
    rounded = gptq_round(weight, scale, inputs.T @ inputs / len(inputs))
    assert np.abs(rounded - nearest).max() <= 2  # the same grid, a step or two away at most
    assert (rounded != nearest).mean() > 0.05
    assert _output_error(weight, rounded, scale, inputs) < 0.8 * _output_error(weight, nearest, scale, inputs)


def test_gptq_rounding_per_channel_hessians_for_depthwise() -> None:
    """One H per row (a depthwise conv's channels each see their own input): over 32 channels of 9
    weights the summed output error drops clearly (greedy per column, so not on every single row)."""
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(32, 9))
    inputs = [rng.normal(size=(2000, 9)) @ rng.normal(size=(9, 9)) for _ in range(32)]
    scale = np.abs(weight).max(axis=1) / 127
    hessians = np.stack([x.T @ x / len(x) for x in inputs])
    nearest = np.clip(np.round(weight / scale[:, None]), -128, 127)
    rounded = gptq_round(weight, scale, hessians)

    def total(values: np.ndarray) -> float:
        rows = [_output_error(weight[r : r + 1], values[r : r + 1], scale[r : r + 1], x) for r, x in enumerate(inputs)]
        return sum(rows)

    assert total(rounded) < 0.85 * total(nearest)


def test_gptq_rounding_needs_more_input_positions_than_columns() -> None:
    """With fewer input positions than columns (a classifier's 1280 inputs seen once per image, or a
    late 1x1 conv at 5x5), H has no more rank than positions: GPTQ then fits those positions (their
    error falls to a fifth) and is *worse* than nearest rounding on new inputs. Such an H is not
    well determined, and those layers keep nearest rounding; with 4 positions per column it helps."""
    rng = np.random.default_rng(2)
    weight, mixing = rng.normal(size=(16, 64)), rng.normal(size=(64, 64))
    seen, unseen = rng.normal(size=(24, 64)) @ mixing, rng.normal(size=(4000, 64)) @ mixing
    scale = np.abs(weight).max(axis=1) / 127
    nearest = np.clip(np.round(weight / scale[:, None]), -128, 127)
    few, enough = Autocorrelation(), Autocorrelation()
    few.add(seen)
    enough.add(rng.normal(size=(256, 64)) @ mixing)
    overfit, fitted = gptq_round(weight, scale, few.mean()), gptq_round(weight, scale, enough.mean())
    assert _output_error(weight, overfit, scale, seen) < 0.5 * _output_error(weight, nearest, scale, seen)
    assert _output_error(weight, overfit, scale, unseen) > 1.2 * _output_error(weight, nearest, scale, unseen)
    assert _output_error(weight, fitted, scale, unseen) < 0.8 * _output_error(weight, nearest, scale, unseen)
    assert not few.well_determined() and enough.well_determined()


def _quantize(source: Path, crops: dict[str, Path], output: Path, **flags: object) -> object:
    options = QuantizeOptions(calib=crops["calib"], val=crops["val"], output=output, **flags)  # type: ignore[arg-type]
    return quantize_model(source, options)


def test_onnx_weight_rounding_moves_only_int8_weights(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Same graph, scales and biases; only int8 weight values move, by a step or two; the settings
    record it; and the model's output moves closer to float (KL on the validation crops)."""
    import onnx

    reports = {
        rounding: _quantize(
            torch_models["pt2"], crops, tmp_path / f"{rounding}.onnx", weight_rounding=rounding, bias_correction=False
        )
        for rounding in (False, True)
    }
    assert reports[True].settings["weight_rounding"]["layers"] == 4  # 3 convolutions and the linear head
    assert reports[False].settings["weight_rounding"] is None
    plain, rounded = (onnx.load(str(reports[r].output)) for r in (False, True))
    changed = changed_operands(plain, rounded)
    assert changed and all(old.dtype == np.int8 and role == "weight" for role, old, _ in changed.values())
    assert all(np.abs(old.astype(int) - new.astype(int)).max() <= 2 for _, old, new in changed.values())
    assert reports[True].validation.mean_kl < reports[False].validation.mean_kl


def test_tflite_weight_rounding_moves_only_int8_weights(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """In the flatbuffer: same ops and constants apart from int8 weight values."""
    from tests.conftest import tflite_constants

    constants = {}
    for rounding in (False, True):
        report = _quantize(
            keras_models["keras"], crops, tmp_path / f"{rounding}.tflite",
            format=Format.TFLITE, weight_rounding=rounding, bias_correction=False,
        )  # fmt: skip
        if rounding:
            assert report.settings["weight_rounding"]["layers"] >= 3
        constants[rounding] = tflite_constants(report.output)
    (plain, plain_ops), (rounded, rounded_ops) = constants[False], constants[True]
    assert plain_ops == rounded_ops and plain.keys() == rounded.keys()
    changed = [i for i in plain if plain[i].shape == rounded[i].shape and not np.array_equal(plain[i], rounded[i])]
    assert changed and all(plain[i].dtype == np.int8 and plain[i].ndim >= 2 for i in changed)


def _session_outputs(path: Path, feed: np.ndarray, disabled: list[str]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


def test_a_layer_kept_in_float_runs_in_float_in_onnxruntime(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """onnxruntime's WeightBiasQuantization re-quantizes a float Conv fed by a per-tensor
    DequantizeLinear to per-tensor int8 weights when the session starts. edgekit's file must give the
    same outputs with that optimisation on (as users run it) as with it off; onnxruntime's own
    quantize_static output with the same layer excluded does not (the stand-in that shows the check bites)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgekit.artifact import read_artifact
    from edgekit.data import DataSource
    from edgekit.quantize.common import tensors
    from edgekit.runtimes import open_runner

    first = _quantize(torch_models["pt2"], crops, tmp_path / "all.onnx", bias_correction=False, weight_rounding=False)
    convs = [n.name for n in onnx.load(str(first.output)).graph.node if n.op_type == "Conv"]
    conv = convs[1]  # fed by the first conv's quantized output (the graph input is not quantized for it)
    kept = _quantize(torch_models["pt2"], crops, tmp_path / "kept.onnx", keep_float=[conv], bias_correction=False)
    artifact = read_artifact(kept.output)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
    feeds = list(tensors(DataSource(crops["val"], count=8), artifact.preprocessing, spec))
    disabled = ["WeightBiasQuantization"]
    for feed in feeds:
        assert np.array_equal(_session_outputs(kept.output, feed, []), _session_outputs(kept.output, feed, disabled))

    data = iter([{spec.name: f} for f in feeds])

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(data, None)

    raw = tmp_path / "raw.onnx"
    float_model = tmp_path / "float.onnx"
    from edgekit.convert.api import ConvertOptions, convert_model

    convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=float_model))
    quantize_static(str(float_model), str(raw), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    nodes_to_exclude=[conv])  # fmt: skip
    differs = [not np.array_equal(_session_outputs(raw, f, []), _session_outputs(raw, f, disabled)) for f in feeds]
    if not any(differs):
        pytest.skip("this onnxruntime no longer re-quantizes float layers (WeightBiasQuantization)")


def test_layers_are_ranked_by_their_effect_on_the_output(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Each weighted layer's score is the share of the int8 model's output error that running it in
    float removes, measured by running that variant: at most 1, and the top layer's share is real
    (the file quantize writes with that layer kept in float has at least that much less output error)."""
    from edgekit.artifact import read_artifact
    from edgekit.data import DataSource
    from edgekit.quantize.common import tensors
    from edgekit.quantize.onnx_bias import named_outputs
    from edgekit.quantize.onnx_sensitivity import output_effect
    from edgekit.runtimes import open_runner

    flags = {"bias_correction": False, "weight_rounding": False}
    plain = _quantize(torch_models["pt2"], crops, tmp_path / "plain.onnx", **flags)
    float_model = tmp_path / "float.onnx"
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.quantize.onnx_quant import preprocess

    convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=float_model))
    preprocess(float_model, tmp_path / "pre.onnx")
    artifact = read_artifact(plain.output)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
    feeds = [{spec.name: t} for t in tensors(DataSource(crops["calib"], count=16), artifact.preprocessing, spec)]
    import onnx

    convs = [n.name for n in onnx.load(str(plain.output)).graph.node if n.op_type in ("Conv", "Gemm")]
    effects = output_effect(tmp_path / "pre.onnx", plain.output, feeds, convs)
    assert set(effects) == set(convs) and all(e <= 1 + 1e-9 for e in effects.values())
    top = max(effects, key=effects.get)
    assert effects[top] > 0
    kept = _quantize(torch_models["pt2"], crops, tmp_path / "kept.onnx", keep_float=[top], **flags)

    def error(path: Path) -> float:
        model = onnx.load(str(path))
        name = model.graph.output[0].name
        ref = list(named_outputs(onnx.load(str(tmp_path / "pre.onnx")), [name], feeds))
        got = list(named_outputs(model, [name], feeds))
        return float(np.mean([np.mean((g[0] - r[0]) ** 2) for g, r in zip(got, ref)]))

    # the variant floats the weights only; the kept file also drops the quantizers the quantizer left out
    # around the layer, so its error is at most what the score promises
    assert error(kept.output) <= error(plain.output) * (1 - effects[top]) * 1.05


def test_tflite_float_io_keeps_the_final_softmax_in_float(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Float IO: the final SOFTMAX runs in float (an int8 softmax rounds small probabilities to 0), as
    in ONNX; every other op stays int8. Integer IO (the Edge TPU) and --int8-softmax are all-int8."""
    from edgekit.runtimes.tflite import read_graph

    def op_types(path: Path) -> dict[str, str]:
        graph = read_graph(path)
        return {op["op_name"]: graph.tensors[int(op["inputs"][0])]["dtype"].__name__ for op in graph.ops}

    default = _quantize(keras_models["keras"], crops, tmp_path / "default.tflite", format=Format.TFLITE)
    assert len(default.settings["float_softmax"]) == 1
    types = op_types(default.output)
    assert types["SOFTMAX"] == "float32" and types["FULLY_CONNECTED"] == types["CONV_2D"] == "int8"
    assert not any("run in float" in warning for warning in default.warnings)  # nothing else fell back
    for name, flags in (("uint8io", {"io_dtype": "uint8"}), ("int8softmax", {"float_softmax": False})):
        report = _quantize(keras_models["keras"], crops, tmp_path / f"{name}.tflite", format=Format.TFLITE, **flags)
        assert report.settings["float_softmax"] == []
        assert op_types(report.output)["SOFTMAX"] != "float32"


def test_float_fallbacks_nobody_asked_for_are_named(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Allowing float kernels (for the softmax or --keep-float) must not hide other ops that fell back to
    float: float_ops names every float compute op whose output was not kept on purpose. (One backend
    throughout: Keras renames layers each time a process loads the model again.)"""
    from edgekit.artifact import read_artifact
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.quantize.backends import TFLiteBackend
    from edgekit.quantize.tflite_quant import float_ops
    from edgekit.runtimes.tflite import find_interpreter

    reference = convert_model(keras_models["keras"], ConvertOptions(Format.TFLITE, output=tmp_path / "f.tflite")).output
    options = QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], calib_count=16, bias_correction=False)
    backend = TFLiteBackend(keras_models["keras"], reference, tmp_path, options, read_artifact(reference).preprocessing)
    interpreter = find_interpreter()[1](model_content=backend._float_flatbuffer())
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    dense = next(
        names[int(op["outputs"][0])] for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"
    )
    weight = next(
        names[int(op["inputs"][1])] for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"
    )
    assert dense in backend.layer_sources() and weight not in backend.layer_sources()  # a weight changes nothing
    softmax = backend.float_softmax()
    kept = backend.quantize([dense])
    assert float_ops(kept, [dense, *softmax]) == [] and backend.warnings(kept) == []
    assert [name.split(" ")[0] for name in float_ops(kept, softmax)] == ["FULLY_CONNECTED"]


def test_a_keep_float_name_that_matches_nothing_is_refused(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """A misspelt --keep-float name used to be ignored silently (the layer stayed int8): now one line
    with the closest name, exit 3, nothing written."""
    from edgekit.errors import BadInput

    with pytest.raises(BadInput, match="names no layer of this model") as raised:
        _quantize(torch_models["pt2"], crops, tmp_path / "q.onnx", keep_float=["node_Conv_9999"])
    assert "did you mean" in raised.value.fix and not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_grouped_convolutions_and_depth_multipliers_keep_nearest_rounding(
    crops: dict[str, Path], tmp_path: Path, target: Format
) -> None:
    """Layers the rounding does not model (a depth multiplier of 2, a grouped 1x1 conv) are left at
    nearest rounding instead of failing the quantization; the plain layers around them are rounded."""
    import torch
    import torch.nn as nn

    from tests.conftest import write_sidecar

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 1, 1, groups=8), nn.ReLU(),
        nn.Conv2d(16, 16, 1, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()  # fmt: skip
    source = tmp_path / "grouped.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 32, 32),)), str(source))
    write_sidecar(source, "pt2", [1, 3, 32, 32], "NCHW", preset="imagenet")
    report = _quantize(source, crops, tmp_path / f"grouped.{target.value}", format=target)
    assert report.output.exists() and report.settings["weight_rounding"]["layers"] >= 2


def test_tflite_layers_are_ranked_by_their_effect_on_the_output(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """TFLite's ranking: the debugger's local error picks the candidates, and each is measured end to
    end; the first layer is one whose float version moves the whole output closer to float, by the
    share its score says (checked again with a converter run of its own)."""
    from edgekit.artifact import read_artifact
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.quantize.backends import DEBUG_SAMPLES, TFLiteBackend
    from edgekit.quantize.common import tensors
    from edgekit.quantize.tflite_bias import collect_outputs, output_error
    from edgekit.quantize.tflite_quant import quantize_tflite

    reference = convert_model(keras_models["keras"], ConvertOptions(Format.TFLITE, output=tmp_path / "f.tflite")).output
    options = QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], calib_count=16)
    backend = TFLiteBackend(keras_models["keras"], reference, tmp_path, options, read_artifact(reference).preprocessing)
    layers = backend.layer_drift()
    first = layers[0]
    assert first.effect_measured and 0 < first.score <= 1
    measured = [layer for layer in layers if layer.effect_measured]
    assert [layer.score for layer in measured if layer.score > 0] == sorted(
        (layer.score for layer in measured if layer.score > 0), reverse=True
    )
    samples = [t.astype(np.float32) for t in tensors(backend.calibration(DEBUG_SAMPLES), backend.prep, backend.spec)]
    expected = collect_outputs(backend._float_flatbuffer(), samples)

    def error(exclude: list[str]) -> float:
        model = quantize_tflite(backend.make_converter, "int8", backend.dataset(DEBUG_SAMPLES), "float",
                                exclude + backend.float_softmax())  # fmt: skip
        return output_error(model, samples, expected, None)

    base = error([])
    assert (base - error([first.node])) / base == pytest.approx(first.score, rel=0.05)


def test_tflite_calibration_is_made_once_and_quantizes_as_a_fresh_converter_run(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """Budget rounds and the ranking quantize one calibrated model again with other layers in float:
    the bytes are those of QuantizationDebugger's denylist on a fresh converter run, for every set of
    float layers, and the converter calibrates once."""
    from edgekit.artifact import read_artifact
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.loaders.keras_loader import import_tf
    from edgekit.quantize import tflite_quant
    from edgekit.quantize.backends import TFLiteBackend

    tf = import_tf()
    reference = convert_model(keras_models["keras"], ConvertOptions(Format.TFLITE, output=tmp_path / "f.tflite")).output
    options = QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], calib_count=16)
    backend = TFLiteBackend(keras_models["keras"], reference, tmp_path, options, read_artifact(reference).preprocessing)
    calibration = backend.calibrated()
    made = []
    real_make = backend.make_converter
    calibration._make_converter = lambda: made.append(1) or real_make()  # counts converter runs
    softmax = backend.float_softmax()
    assert softmax
    models = []
    conv = next(name for name in sorted(backend.layer_sources()) if "conv2d" in name.lower())
    for exclude in (softmax, [conv, *softmax]):
        debug = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=exclude)
        converter = tflite_quant.configure(real_make(), "int8", backend.dataset(), "float", allow_float=True)
        fresh = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=backend.dataset(), debug_options=debug
        ).get_nondebug_quantized_model()
        models.append(calibration.quantize(exclude))
        assert models[-1] == fresh
    assert models[0] != models[1]  # the conv layer really stayed float
    assert made == [1]
    assert backend.calibrated() is calibration


def test_integer_io_keeps_every_layer_int8_under_a_budget(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """An Edge TPU build (--io-dtype uint8) under a budget it cannot meet stays all-int8 with uint8
    inputs and outputs (a float layer would have turned them back to float), and says why; --keep-float
    with integer IO is refused."""
    from edgekit.errors import BadInput
    from edgekit.runtimes.tflite import find_interpreter

    options = QuantizeOptions(
        calib=crops["calib"], val=crops["val"], io_dtype="uint8", max_drift="1.0", output=tmp_path / "u.tflite"
    )
    report = quantize_model(keras_models["keras"], options)
    assert [r.float_layers for r in report.rounds] == [[]]
    assert report.output is None and not (tmp_path / "u.tflite").exists()  # 100% agreement is not reached
    assert any("every op runs in int8" in warning for warning in report.warnings)
    looser = QuantizeOptions(**{**vars(options), "max_drift": "0.5", "budget": None})
    met = quantize_model(keras_models["keras"], looser)
    interpreter = find_interpreter()[1](model_path=str(met.output))
    assert interpreter.get_input_details()[0]["dtype"] == interpreter.get_output_details()[0]["dtype"] == np.uint8
    with pytest.raises(BadInput, match="--keep-float needs a float-IO model"):
        quantize_model(keras_models["keras"], QuantizeOptions(**{**vars(options), "keep_float": ["x"], "force": True}))


def test_tflite_budget_rounds_reuse_bias_corrections_before_the_first_float_layer(
    keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """A budget round keeps the layers before its first float layer as the earlier round corrected
    them, without measuring them again, and writes the bytes that a correction from scratch writes;
    a float first layer changes everything after it, so nothing is reused there."""
    from edgekit.artifact import read_artifact
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.quantize.backends import TFLiteBackend
    from edgekit.quantize.tflite_bias import WEIGHTED_OPS
    from edgekit.runtimes.tflite import find_interpreter

    reference = convert_model(keras_models["keras"], ConvertOptions(Format.TFLITE, output=tmp_path / "f.tflite")).output
    options = QuantizeOptions(format=Format.TFLITE, calib=crops["calib"], calib_count=16, range_selection=False)
    messages: list[str] = []

    def backend(work: str) -> TFLiteBackend:
        (tmp_path / work).mkdir(exist_ok=True)
        prep = read_artifact(reference).preprocessing
        return TFLiteBackend(keras_models["keras"], reference, tmp_path / work, options, prep, messages.append)

    reusing = backend("reusing")
    interpreter = find_interpreter()[1](model_content=reusing._float_flatbuffer())
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    weighted = [names[int(op["outputs"][0])] for op in ops if op["op_name"] in WEIGHTED_OPS]
    first, last = weighted[0], weighted[-1]  # the stem conv and the dense head
    reusing.quantize([])
    for float_layer in (last, first):
        messages.clear()
        reused = reusing.quantize([float_layer]).read_bytes()
        said = [message for message in messages if "as in the earlier round" in message]
        assert bool(said) == (float_layer == last), said
        from_scratch = backend(f"from-scratch-{weighted.index(float_layer)}").quantize([float_layer])
        assert reused == from_scratch.read_bytes()


@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_keep_float_takes_the_source_layer_name_the_layer_table_shows(
    torch_models: dict[str, Path], keras_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path, target: Format
) -> None:
    """`--keep-float conv2` (the torch module / Keras layer the report's layer table names) keeps the
    nodes made from that layer in float: the same file as naming the node itself."""
    from edgekit.artifact import read_artifact
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.quantize.backends import BACKENDS

    source = torch_models["pt2"] if target is Format.ONNX else keras_models["keras"]
    reference = convert_model(source, ConvertOptions(target, output=tmp_path / f"f.{target.value}")).output
    options = QuantizeOptions(format=target, calib=crops["calib"], calib_count=16)
    backend = BACKENDS[target](source, reference, tmp_path, options, read_artifact(reference).preprocessing)
    layer = next(layer for layer in backend.layer_drift() if layer.source_name.split(" (")[0] != layer.node)
    shown = layer.source_name.split(" (")[0]
    assert backend.nodes_named([shown, "no_such_layer"]) == ([layer.node], ["no_such_layer"])
    made = {}
    for name in (shown, layer.node, None):
        flags = {"keep_float": [name]} if name else {}
        report = _quantize(source, crops, tmp_path / f"{len(made)}.{target.value}", format=target, **flags)
        made[name] = (report.rounds[-1].float_layers, _model_body(report.output))
    assert made[shown] == made[layer.node] and made[shown][0] == [layer.node]
    assert made[None][1] != made[shown][1]  # the layer really is float in both


def _model_body(path: Path) -> object:
    """The model without its metadata (which records the file name, times and options)."""
    if path.suffix == ".onnx":
        import onnx

        return onnx.load(str(path)).graph.SerializeToString()
    from tests.conftest import tflite_constants

    constants, ops = tflite_constants(path)
    return ops, sorted((index, value.tobytes()) for index, value in constants.items())
