"""The typed settings of `edgekit convert`: the one source of its command-line options, the recipe
step's keys and checks, the JSON schema and README's table (see edgekit.schema)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from edgekit.schema import option

ConvertTarget = Literal["onnx", "tflite"]


@dataclasses.dataclass
class ConvertSettings:
    """How to convert and how closely the result must match its source."""

    to: ConvertTarget = option(help="Target format.")
    opset: int | None = option(None, low=7, help="ONNX opset (default: 18 for torch.export, 17 otherwise).")
    tolerance: float | None = option(None, low=0, help="Max |Δ| of any output vs the source (default 1e-3 for fp32).")
    min_agreement: float | None = option(
        None, low=0, high=1, help="Min top-1 agreement with the source (default 1.0 for fp32)."
    )
    check_images: int = option(16, low=1, high=10000, help="Real-photo crops used for the parity check.")
    threads: int | None = option(None, low=1, high=256, help="Runtime threads for the parity check.")
