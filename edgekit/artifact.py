"""ModelArtifact: a model file plus what is needed to use it, stored as `<model>.edgekit.json`."""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit import __version__
from edgekit.errors import BadInput
from edgekit.formats import Format, detect_format
from edgekit.fsutil import sha256_of, write_bytes_atomic

if TYPE_CHECKING:
    from edgekit.jsontypes import Json

SIDECAR_SUFFIX = ".edgekit.json"
SCHEMA_VERSION = 1


@dataclasses.dataclass
class TensorSpec:
    """One model input or output: name, shape (None for a dynamic dim), dtype, layout, quantization."""

    name: str
    shape: list[int | None]
    dtype: str = "float32"
    layout: str | None = None  # "NCHW" or "NHWC" for image tensors
    scale: float | None = None  # quantization of int8/uint8 tensors
    zero_point: int | None = None
    meaning: str | None = None  # outputs: "probabilities" or "logits" (edgekit.output_meaning)

    @classmethod
    def from_dict(cls, data: Json) -> TensorSpec:
        """Build from the JSON form, ignoring unknown keys written by newer versions."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass
class Preprocessing:
    """How an RGB photo becomes the model's input: resize, then (pixel/255 - mean) / std."""

    mean: list[float]
    std: list[float]
    resize: str = "center-crop"  # "center-crop" (resize shorter side, crop) or "stretch"
    crop_fraction: float = 0.875
    size: list[int] | None = None  # [height, width]; None: taken from the model input
    channel_order: str = "RGB"
    preset: str | None = None

    @classmethod
    def from_dict(cls, data: Json) -> Preprocessing:
        """Build from the JSON form, ignoring unknown keys written by newer versions."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass
class ModelArtifact:
    """Everything edgekit knows about one model file; never holds a session."""

    path: Path
    format: Format
    inputs: list[TensorSpec] = dataclasses.field(default_factory=list)
    outputs: list[TensorSpec] = dataclasses.field(default_factory=list)
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    precision: str | None = None
    lineage: list[Json] = dataclasses.field(default_factory=list)
    arch: Json | None = None  # torch: {"callable": "pkg.module:fn", "kwargs": {...}} that builds the net

    def to_dict(self) -> Json:
        """The JSON form stored in the sidecar (paths relative to the sidecar's folder)."""
        return {
            "edgekit_schema": SCHEMA_VERSION,
            "file": self.path.name,
            "format": self.format.value,
            "precision": self.precision,
            "inputs": [dataclasses.asdict(s) for s in self.inputs],
            "outputs": [dataclasses.asdict(s) for s in self.outputs],
            "preprocessing": dataclasses.asdict(self.preprocessing) if self.preprocessing else None,
            "labels": self.labels,
            "lineage": self.lineage,
            "arch": self.arch,
        }

    def save(self) -> Path:
        """Write the sidecar atomically and return its path."""
        target = sidecar_path(self.path)
        write_bytes_atomic(target, json.dumps(self.to_dict(), indent=2).encode())
        return target


def sidecar_path(model_path: Path) -> Path:
    """Where the sidecar of `model_path` lives."""
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)


def read_artifact(path: Path) -> ModelArtifact:
    """Describe the model at `path` from its sidecar (or ONNX metadata); bare if it has neither."""
    fmt = detect_format(path)
    data = _read_sidecar(path) or _read_onnx_metadata(path, fmt)
    if not data:
        return ModelArtifact(path=path, format=fmt)
    try:
        return _artifact_from(path, fmt, data)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise BadInput(
            f"the sidecar of {path} has a malformed field ({exc})",
            fix="delete the .edgekit.json or re-create the model",
        ) from exc


def _artifact_from(path: Path, fmt: Format, data: Json) -> ModelArtifact:
    prep, labels, lineage = data.get("preprocessing"), data.get("labels"), data.get("lineage") or []
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise TypeError("labels must be a list of strings")
    if not isinstance(lineage, list) or not all(isinstance(entry, dict) for entry in lineage):
        raise TypeError("lineage must be a list of records")
    return ModelArtifact(
        path=path,
        format=fmt,
        inputs=[TensorSpec.from_dict(s) for s in data.get("inputs") or []],
        outputs=[TensorSpec.from_dict(s) for s in data.get("outputs") or []],
        preprocessing=Preprocessing.from_dict(prep) if prep else None,
        labels=labels,
        precision=data.get("precision") if isinstance(data.get("precision"), str) else None,
        lineage=lineage,
        arch=data.get("arch") if isinstance(data.get("arch"), dict) else None,
    )


def _read_sidecar(path: Path) -> Json | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"sidecar {side} is not valid JSON ({exc})", fix="delete it or re-create the model") from exc
    if not isinstance(data, dict) or not isinstance(data.get("edgekit_schema"), int):
        raise BadInput(f"sidecar {side} is not an edgekit sidecar", fix="delete it or re-create the model")
    return data


def _read_onnx_metadata(path: Path, fmt: Format) -> Json | None:
    if fmt is not Format.ONNX:
        return None
    text = _onnx_metadata_value(path, "edgekit")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (ValueError, TypeError):  # invalid JSON, or bytes that are not UTF-8 in a damaged file
        return None
    return data if isinstance(data, dict) else None


def _onnx_metadata_value(path: Path, key: str) -> str | None:
    """A metadata_props value, read with onnx or else onnxruntime (the device install has only the latter)."""
    try:
        import onnx
    except ImportError:
        onnx = None
    try:
        if onnx is not None:
            model = onnx.load(str(path), load_external_data=False)
            return next((p.value for p in model.metadata_props if p.key == key), None)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(key)
    except Exception:  # noqa: BLE001 - a corrupt file is reported by the runner that opens it
        return None


def lineage_entry(step: str, source: Path, options: Json) -> Json:
    """One lineage record: which step made this file from which source, with what options."""
    return {
        "step": step,
        "source": str(source),
        "source_sha256": sha256_of(source),
        "edgekit_version": __version__,
        "options": options,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
