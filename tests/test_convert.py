"""Conversions of tiny torch and Keras models through every route, each checked against its source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import read_artifact, sidecar_path
from edgekit.convert import routes
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.errors import BadInput, DriftExceeded, UnsupportedRoute
from edgekit.formats import Format
from edgekit.loaders import LoadOptions
from edgekit.preprocess import PreprocessOverrides
from tests.conftest import TINY_ARCH, TINY_SHAPE

TORCH_SOURCES = {
    "pt2": LoadOptions(),
    "torchscript": LoadOptions(),
    "state_dict": LoadOptions(arch=TINY_ARCH, input_shape=TINY_SHAPE),
}


@pytest.mark.parametrize("source", list(TORCH_SOURCES))
@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_torch_sources_convert_with_parity(
    torch_models: dict[str, Path], tmp_path: Path, source: str, target: Format
) -> None:
    output = tmp_path / f"tiny_{source}.{target.value}"
    options = ConvertOptions(
        to=target,
        output=output,
        load=TORCH_SOURCES[source],
        check_images=6,
        preprocess=PreprocessOverrides(preset="imagenet"),
    )
    report = convert_model(torch_models[source], options)
    assert report.parity.passed
    assert report.parity.outputs[0].max_abs_diff < 1e-4
    assert report.parity.outputs[0].top1_agreement == 1.0
    artifact = read_artifact(output)
    assert artifact.format is target
    assert artifact.inputs[0].layout == ("NHWC" if target is Format.TFLITE else "NCHW")
    assert artifact.preprocessing is not None and artifact.preprocessing.preset == "imagenet"
    assert artifact.lineage[-1]["step"] == "convert"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("source", ["keras", "h5", "saved_model"])
@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_keras_sources_convert_with_parity(
    keras_models: dict[str, Path], tmp_path: Path, source: str, target: Format
) -> None:
    output = tmp_path / f"tiny_{source}.{target.value}"
    options = ConvertOptions(
        to=target, output=output, check_images=6, preprocess=PreprocessOverrides(preset="mobilenet")
    )
    report = convert_model(keras_models[source], options)
    assert report.parity.passed and report.parity.outputs[0].max_abs_diff < 1e-5
    assert read_artifact(output).inputs[0].layout == "NHWC"


def test_onnx_to_tflite_and_metadata(torch_models: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = tmp_path / "tiny.onnx"
    convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=onnx_path, check_images=4))
    sidecar_path(onnx_path).unlink()  # the ONNX metadata alone must carry the artifact
    artifact = read_artifact(onnx_path)
    assert artifact.preprocessing is not None and artifact.preprocessing.preset == "imagenet"
    report = convert_model(onnx_path, ConvertOptions(to=Format.TFLITE, check_images=4))
    assert report.parity.passed and report.output == tmp_path / "tiny.tflite"


def test_user_photo_folder_feeds_the_check(torch_models: dict[str, Path], tmp_path: Path, photos_dir: Path) -> None:
    report = convert_model(
        torch_models["pt2"],
        ConvertOptions(to=Format.ONNX, output=tmp_path / "m.onnx", data=photos_dir, check_images=3),
    )
    assert report.parity.images == 3


def _shuffled_export(job: routes.ConvertJob) -> dict[str, str]:
    """A real ONNX export whose weights are then permuted: a deliberately wrong conversion."""
    import onnx
    from onnx import numpy_helper

    from edgekit.convert.torch_to_onnx import convert

    notes = convert(job)
    model = onnx.load(str(job.target))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim >= 2:
            init.CopyFrom(
                numpy_helper.from_array(
                    np.random.default_rng(1).permutation(array.ravel()).reshape(array.shape), init.name
                )
            )
    onnx.save(model, str(job.target))
    return notes


def test_drift_is_caught_and_nothing_is_written(
    torch_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.formats import Family

    monkeypatch.setitem(routes.ROUTES, (Family.TORCH, Format.ONNX), "tests.test_convert:_shuffled_export")
    output = tmp_path / "bad.onnx"
    with pytest.raises(DriftExceeded, match=r"max \|Δ\|"):
        convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=output, check_images=4))
    assert list(tmp_path.iterdir()) == []


def test_tolerance_zero_rejects_even_a_good_conversion(torch_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DriftExceeded):
        convert_model(
            torch_models["pt2"],
            ConvertOptions(to=Format.TFLITE, output=tmp_path / "m.tflite", tolerance=0.0, check_images=4),
        )
    assert list(tmp_path.iterdir()) == []


def test_converting_to_the_same_format_is_refused(torch_models: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedRoute, match="already onnx"):
        convert_model(_onnx_copy(torch_models), ConvertOptions(to=Format.ONNX))


def _onnx_copy(torch_models: dict[str, Path]) -> Path:
    target = torch_models["pt2"].parent / "copy_for_route.onnx"
    if not target.exists():
        convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=target, check_images=2))
    return target


def test_tflite_to_onnx_has_no_route(torch_models: dict[str, Path], tmp_path: Path) -> None:
    tfl = tmp_path / "m.tflite"
    convert_model(torch_models["pt2"], ConvertOptions(to=Format.TFLITE, output=tfl, check_images=2))
    with pytest.raises(UnsupportedRoute, match="loses quantization"):
        convert_model(tfl, ConvertOptions(to=Format.ONNX))


def test_labels_must_match_the_classes(torch_models: dict[str, Path], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(BadInput, match="2 names but the model outputs 10"):
        convert_model(
            torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=tmp_path / "m.onnx", labels_file=labels)
        )
    assert not (tmp_path / "m.onnx").exists()


def test_sidecar_records_lineage_with_hash(torch_models: dict[str, Path], tmp_path: Path) -> None:
    import hashlib

    output = tmp_path / "m.onnx"
    convert_model(torch_models["pt2"], ConvertOptions(to=Format.ONNX, output=output, check_images=2))
    entry = json.loads(sidecar_path(output).read_text())["lineage"][-1]
    assert entry["source_sha256"] == hashlib.sha256(torch_models["pt2"].read_bytes()).hexdigest()
    assert entry["options"]["exporter"] == "torch.export (dynamo)"
