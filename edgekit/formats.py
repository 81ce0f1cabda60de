"""The one list of model formats edgekit knows, and detection by content (not only by suffix)."""

from __future__ import annotations

import dataclasses
import enum
import zipfile
from pathlib import Path

from edgekit.errors import BadInput


class Family(str, enum.Enum):
    """Which framework or runtime a format belongs to."""

    TORCH = "torch"
    KERAS = "keras"
    ONNX = "onnx"
    TFLITE = "tflite"


class Format(str, enum.Enum):
    """A model file format."""

    PT2 = "pt2"
    TORCHSCRIPT = "torchscript"
    TORCH_CHECKPOINT = "torch-checkpoint"  # torch.save output: a state dict, or a whole pickled module
    KERAS = "keras"
    KERAS_H5 = "keras-h5"
    SAVED_MODEL = "saved-model"
    ONNX = "onnx"
    TFLITE = "tflite"

    @property
    def family(self) -> Family:
        """The framework family of this format."""
        return _FAMILY[self]

    @property
    def deployable(self) -> bool:
        """True when a device runtime runs this format (ONNX, TFLite), not only its framework."""
        return FAMILIES[self.family].device_format is self


@dataclasses.dataclass(frozen=True)
class FamilyBackend:
    """How edgekit runs and reads one format family: the one registry line a new family adds."""

    runtime: str  # the runtime's name in device profiles (runtime: onnxruntime) and messages
    runner: str  # "module:Class" of its Runner (edgekit.runtimes)
    inspector: str  # "module:function" of its inspector (edgekit.inspectors)
    device_format: Format | None = None  # the format a device runtime runs; None for training frameworks


FAMILIES: dict[Family, FamilyBackend] = {
    Family.ONNX: FamilyBackend("onnxruntime", "edgekit.runtimes.onnxrt:OnnxRunner",
                               "edgekit.inspectors.onnx_info:inspect_graph", Format.ONNX),
    Family.TFLITE: FamilyBackend("tflite", "edgekit.runtimes.tflite:TFLiteRunner",
                                 "edgekit.inspectors.tflite_info:inspect_graph", Format.TFLITE),
    Family.TORCH: FamilyBackend("torch", "edgekit.runtimes.torch_rt:TorchRunner",
                                "edgekit.inspectors.framework_info:inspect_torch"),
    Family.KERAS: FamilyBackend("tensorflow", "edgekit.runtimes.keras_rt:KerasRunner",
                                "edgekit.inspectors.framework_info:inspect_keras"),
}  # fmt: skip


def device_runtimes() -> dict[str, Format]:
    """Runtime names a device profile may ask for, with the format each runs."""
    return {b.runtime: b.device_format for b in FAMILIES.values() if b.device_format is not None}


_FAMILY = {
    Format.PT2: Family.TORCH,
    Format.TORCHSCRIPT: Family.TORCH,
    Format.TORCH_CHECKPOINT: Family.TORCH,
    Format.KERAS: Family.KERAS,
    Format.KERAS_H5: Family.KERAS,
    Format.SAVED_MODEL: Family.KERAS,
    Format.ONNX: Family.ONNX,
    Format.TFLITE: Family.TFLITE,
}

# Output suffix for each format edgekit can write.
SUFFIX = {Format.ONNX: ".onnx", Format.TFLITE: ".tflite", Format.PT2: ".pt2", Format.KERAS: ".keras"}

_SUFFIX_CLAIMS = {
    ".pt2": Format.PT2,
    ".pth": Format.TORCH_CHECKPOINT,
    ".pt": Format.TORCH_CHECKPOINT,
    ".ckpt": Format.TORCH_CHECKPOINT,
    ".bin": Format.TORCH_CHECKPOINT,
    ".keras": Format.KERAS,
    ".h5": Format.KERAS_H5,
    ".hdf5": Format.KERAS_H5,
    ".onnx": Format.ONNX,
    ".tflite": Format.TFLITE,
    ".torchscript": Format.TORCHSCRIPT,
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_KNOWN = ", ".join(sorted(_SUFFIX_CLAIMS)) + ", or a SavedModel directory"


def detect_format(path: Path) -> Format:
    """Return the format of the model at `path`, read from its content.

    Raises BadInput, naming the file and what to do, for a missing, empty, corrupt or unknown file.
    """
    if not path.exists():
        raise BadInput(f"{path} does not exist", fix="check the path")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return Format.SAVED_MODEL
        raise BadInput(f"{path} is a directory without saved_model.pb", fix=f"give a model file ({_KNOWN})")
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty (0 bytes)", fix="re-export or re-download the model")
    with open(path, "rb") as handle:
        head = handle.read(16)
    found = _format_from_head(path, head)
    claimed = _SUFFIX_CLAIMS.get(path.suffix.lower())
    if found is None:
        if claimed is not None:
            raise BadInput(
                f"{path} has suffix {path.suffix} but its content is not a {claimed.value} model",
                fix="the file is corrupt, truncated or mislabelled; re-export it",
            )
        raise BadInput(f"{path} is not a model format edgekit knows", fix=f"give one of {_KNOWN}")
    return found


def _format_from_head(path: Path, head: bytes) -> Format | None:
    if head.startswith(_HDF5_MAGIC):
        return Format.KERAS_H5
    if head[4:8] == b"TFL3":
        return Format.TFLITE
    if head.startswith(_ZIP_MAGIC):
        return _format_of_zip(path)
    if head[:1] == b"\x80" and path.suffix.lower() != ".onnx":
        return Format.TORCH_CHECKPOINT  # legacy (non-zip) torch.save pickle
    if head[:1] == b"\x08" and path.suffix.lower() in (".onnx", ""):
        return Format.ONNX  # protobuf field 1 (ir_version), varint; the loader verifies the rest
    return None


def _format_of_zip(path: Path) -> Format:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"{path} is a corrupt or truncated zip archive ({exc})", fix="re-export the model") from exc
    basenames = {name.split("/", 1)[-1] for name in names}
    if "config.json" in names and "model.weights.h5" in names:
        return Format.KERAS
    if "archive_format" in basenames or any(name.endswith("serialized_exported_program.json") for name in names):
        return Format.PT2
    if any("/code/" in name for name in names) and "constants.pkl" in basenames:
        return Format.TORCHSCRIPT
    if "data.pkl" in basenames:
        return Format.TORCH_CHECKPOINT
    raise BadInput(f"{path} is a zip archive but not a model edgekit knows", fix=f"give one of {_KNOWN}")
