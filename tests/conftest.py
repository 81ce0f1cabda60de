"""Shared fixtures: tiny torch/Keras models in every source format, and real photos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import ModelArtifact, TensorSpec
from edgekit.formats import Format
from edgekit.preprocess import PRESETS
from tests.digits import SIZE, digits_folders, load_split, train_keras, train_torch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TINY_SHAPE = (1, 3, 32, 32)
TINY_ARCH = "tests.tiny_nets:TinyNet"


def write_sidecar(path: Path, fmt: str, shape: list[int], layout: str, preset: str = "imagenet") -> None:
    """Give a test model a sidecar with preprocessing, as `edgekit fetch` does for real models."""
    import dataclasses

    from edgekit.artifact import ModelArtifact, TensorSpec
    from edgekit.formats import Format
    from edgekit.preprocess import PRESETS

    ModelArtifact(
        path=path,
        format=Format(fmt),
        preprocessing=dataclasses.replace(PRESETS[preset]),
        inputs=[TensorSpec("input", shape, layout=layout)],
    ).save()


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled real photographs written as PNG files."""
    from edgekit.samples import write_sample_photos

    folder = tmp_path_factory.mktemp("photos")
    write_sample_photos(folder)
    return folder


@pytest.fixture(scope="session")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TinyNet saved as .pt2, TorchScript, state dict, and a whole pickled module."""
    import torch

    from tests.tiny_nets import make_tiny

    folder = tmp_path_factory.mktemp("torch")
    model = make_tiny()
    example = (torch.zeros(TINY_SHAPE),)
    paths = {
        "pt2": folder / "tiny.pt2",
        "torchscript": folder / "tiny.torchscript.pt",
        "state_dict": folder / "tiny.pth",
        "pickle": folder / "tiny_module.pt",
    }
    torch.export.save(torch.export.export(model, example), str(paths["pt2"]))
    torch.jit.trace(model, example).save(str(paths["torchscript"]))
    torch.save(model.state_dict(), paths["state_dict"])
    torch.save(model, paths["pickle"])
    write_sidecar(paths["pt2"], "pt2", list(TINY_SHAPE), "NCHW")
    write_sidecar(paths["torchscript"], "torchscript", list(TINY_SHAPE), "NCHW")
    return paths


def build_tiny_keras(seed: int = 0):
    """A small Keras CNN (NHWC): conv, BN, ReLU6, depthwise, pooling, dense softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Keras CNN as .keras, legacy .h5 and a SavedModel directory."""
    folder = tmp_path_factory.mktemp("keras")
    model = build_tiny_keras()
    paths = {"keras": folder / "tiny.keras", "h5": folder / "tiny.h5", "saved_model": folder / "tiny_saved"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.export(str(paths["saved_model"]))
    write_sidecar(paths["keras"], "keras", [None, 32, 32, 3], "NHWC", preset="mobilenet")
    return paths


@pytest.fixture(scope="session")
def tiny_tflite(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TinyNet (logits) as float TFLite."""
    from edgekit.convert.api import ConvertOptions, convert_model

    output = tmp_path_factory.mktemp("tiny-tflite") / "tiny.tflite"
    return convert_model(torch_models["pt2"], ConvertOptions(to=Format.TFLITE, output=output, check_images=2)).output


@pytest.fixture(scope="session")
def crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """24 calibration and 24 validation crops (64x64) of the real photos, disjoint seeds."""
    from edgekit.samples import write_crops

    folder = tmp_path_factory.mktemp("crops")
    write_crops(folder / "calib", 24, seed=1, size=64)
    write_crops(folder / "val", 24, seed=2, size=64)
    return {"calib": folder / "calib", "val": folder / "val"}


@pytest.fixture()
def rng() -> np.random.Generator:
    """A seeded generator."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def pi_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only `pip install edgekit[pi]`: no torch, no TensorFlow."""
    import subprocess
    import venv

    folder = tmp_path_factory.mktemp("pi-venv")
    venv.EnvBuilder(with_pip=True).create(folder)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", f"{repo}[pi]"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"pip install edgekit[pi] failed: {done.stderr[-2000:]}")
    return folder


# Real labelled data: scikit-learn's handwritten digits, and CNNs trained on them (torch and Keras).
DIGIT_LABELS = [str(d) for d in range(10)]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return digits_folders(tmp_path_factory.mktemp("digits"))


def _digits_sidecar(path: Path, fmt: Format, shape: list[int | None], layout: str, arch: str | None = None) -> None:
    ModelArtifact(
        path=path,
        format=fmt,
        preprocessing=PRESETS["unit"],
        labels=DIGIT_LABELS,
        inputs=[TensorSpec("input", shape, layout=layout)],
        arch={"callable": arch, "kwargs": {}} if arch else None,
    ).save()


@pytest.fixture(scope="session")
def torch_digits(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    x, y = load_split(digits["train"])
    model = train_torch(x, y)
    path = tmp_path_factory.mktemp("tdigits") / "digits.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, SIZE, SIZE),)), str(path))
    _digits_sidecar(path, Format.PT2, [1, 3, SIZE, SIZE], "NCHW", "tests.digits:build_torch_cnn")
    return path


@pytest.fixture(scope="session")
def keras_digits(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = load_split(digits["train"])
    path = tmp_path_factory.mktemp("kdigits") / "digits.keras"
    train_keras(x, y).save(path)
    _digits_sidecar(path, Format.KERAS, [None, SIZE, SIZE, 3], "NHWC")
    return path


def tflite_constants(path: Path) -> tuple[dict[int, np.ndarray], list[str]]:
    """A TFLite file's stored constants (named tensors no op produces and no one feeds; unnamed ones
    are kernel scratch space) by tensor index, and its op names in order: what a rewrite may change."""
    from edgekit.runtimes.tflite import read_graph

    graph = read_graph(path)
    produced = {int(i) for op in graph.ops for i in op["outputs"]}
    produced |= {int(d["index"]) for d in graph.interpreter.get_input_details()}
    stored = {i: graph.interpreter.get_tensor(i) for i, t in graph.tensors.items() if t["name"] and i not in produced}
    return stored, [op["op_name"] for op in graph.ops]
