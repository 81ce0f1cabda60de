"""Loading framework models safely (torch, Keras); ONNX and TFLite are opened by their runners."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


@dataclasses.dataclass
class LoadOptions:
    """How to load a source model that does not fully describe itself."""

    arch: str | None = None  # "package.module:callable" for a state dict
    arch_kwargs: Json = dataclasses.field(default_factory=dict)
    trust_pickle: bool = False  # allow unpickling a whole torch module (runs code from the file)
    input_shape: tuple[int, ...] | None = None
