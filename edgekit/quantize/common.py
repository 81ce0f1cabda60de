"""What ONNX and TFLite quantization share: layer drift records and sample feeding."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np

from edgekit.artifact import Preprocessing, TensorSpec
from edgekit.data import DataSource


@dataclasses.dataclass
class LayerDrift:
    """How much one layer's output suffers from quantization (lower SQNR = worse)."""

    node: str  # name in the quantized format (what gets excluded)
    source_name: str  # the layer's name in the source model, where it can be recovered
    op_type: str
    sqnr_db: float | None  # signal-to-quantization-noise at the layer's output, where measurable
    score: float  # ranking key: larger = more damaging
    effect_measured: bool = True  # False: ranked by its local error only (score is then that error)


def tensors(data: DataSource, prep: Preprocessing, spec: TensorSpec, limit: int | None = None) -> Iterator[np.ndarray]:
    """Preprocessed input tensors from a data source."""
    for sample in itertools.islice(data, limit):
        yield sample.to_tensor(prep, spec)
