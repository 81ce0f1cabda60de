"""The conversion route table: (source family, target format) -> converter function.

A converter is `fn(job: ConvertJob) -> dict` that writes `job.target` and returns notes for the
report (exporter used, opset, ...). A new route is one module plus one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import UnsupportedRoute
from edgekit.formats import Family, Format

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact
    from edgekit.runtimes import Runner


@dataclasses.dataclass
class ConvertJob:
    """What a converter needs: the opened source, where to write, and the options that apply."""

    source: ModelArtifact
    runner: Runner  # the source model, opened (its .model is the framework object)
    target: Path
    opset: int | None = None
    input_shape: list[int] | None = None


ROUTES: dict[tuple[Family, Format], str] = {
    (Family.TORCH, Format.ONNX): "edgekit.convert.torch_to_onnx:convert",
    (Family.TORCH, Format.TFLITE): "edgekit.convert.torch_to_onnx:convert_to_tflite",
    (Family.KERAS, Format.TFLITE): "edgekit.convert.keras_convert:to_tflite",
    (Family.KERAS, Format.ONNX): "edgekit.convert.keras_convert:to_onnx",
    (Family.ONNX, Format.TFLITE): "edgekit.convert.onnx_to_tflite:convert",
}

_NO_ROUTE_WHY = {
    (
        Family.TFLITE,
        Format.ONNX,
    ): "TFLite -> ONNX loses quantization and layout information; convert from the source model",
}


def find_route(source: Format, target: Format) -> Any:
    """The converter for this pair, or UnsupportedRoute saying why there is none."""
    key = (source.family, target)
    if source.family.value == target.value:
        raise UnsupportedRoute(f"the model is already {target.value}", fix="pick another --to")
    if key not in ROUTES:
        why = _NO_ROUTE_WHY.get(key, f"no route from {source.value} to {target.value}")
        choices = ", ".join(f"{s.value}->{t.value}" for s, t in ROUTES)
        raise UnsupportedRoute(why, fix=f"routes: {choices}")
    module_name, _, function = ROUTES[key].partition(":")
    return getattr(importlib.import_module(module_name), function)
