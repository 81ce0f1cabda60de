"""Compare a converted model with its source on the same real photos (max |Δ|, top-1 agreement)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgekit.artifact import Preprocessing
from edgekit.compare import paired_outputs
from edgekit.data import Sample
from edgekit.errors import DriftExceeded
from edgekit.preprocess import list_images, load_image
from edgekit.runtimes import Runner
from edgekit.samples import random_crops, sample_photos

# Default limits per precision of the converted model: max |Δ| of any output, min top-1 agreement.
TOLERANCES = {"fp32": (1e-3, 1.0), "fp16": (5e-2, 0.98)}


@dataclasses.dataclass
class OutputParity:
    """How one output differs between source and result."""

    name: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float


@dataclasses.dataclass
class ParityReport:
    """Parity of a conversion on `images` real-photo inputs, and whether it is within limits."""

    images: int
    outputs: list[OutputParity]
    tolerance: float
    min_agreement: float
    source_runtime: str
    result_runtime: str

    @property
    def passed(self) -> bool:
        """True when every output is within the tolerance and the agreement limit."""
        return all(o.max_abs_diff <= self.tolerance and o.top1_agreement >= self.min_agreement for o in self.outputs)

    def failures(self) -> list[str]:
        """One phrase per broken limit."""
        problems = []
        for out in self.outputs:
            if out.max_abs_diff > self.tolerance:
                problems.append(f"output {out.name}: max |Δ| {out.max_abs_diff:.3g} > {self.tolerance:g}")
            if out.top1_agreement < self.min_agreement:
                problems.append(
                    f"output {out.name}: top-1 agreement {out.top1_agreement:.1%} < {self.min_agreement:.1%}"
                )
        return problems


def parity_images(data: Path | None, count: int, seed: int = 0) -> list[np.ndarray]:
    """Real photos for the check: seeded crops of a user folder, or of the bundled sample photos."""
    photos = [load_image(p) for p in list_images(data)] if data else list(sample_photos().values())
    return random_crops(photos, count, seed)


def compare(source: Runner, result: Runner, prep: Preprocessing, images: list[np.ndarray]) -> list[OutputParity]:
    """Run both runners on the same photos (edgekit.compare) and measure each output's |Δ| and top-1."""
    diffs: list[list[np.ndarray]] = [[] for _ in source.outputs()]
    agree = np.zeros(len(source.outputs()))
    samples = [Sample(f"crop {index}", image=image) for index, image in enumerate(images)]
    for _sample, ref, got in paired_outputs(source, result, prep, samples):
        for index, (a, b) in enumerate(zip(ref, got)):
            a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            diffs[index].append(np.abs(a.astype(np.float64) - b))
            agree[index] += float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return [
        OutputParity(
            spec.name,
            float(max(d.max() for d in diffs[i])),
            float(np.mean([d.mean() for d in diffs[i]])),
            float(agree[i] / len(images)),
        )
        for i, spec in enumerate(result.outputs())
    ]


def check(report: ParityReport, what: str) -> None:
    """Raise DriftExceeded naming every broken limit."""
    if not report.passed:
        raise DriftExceeded(
            f"{what} differs from its source: {'; '.join(report.failures())}",
            fix="the output was not written; use --tolerance/--min-agreement to accept it",
        )
