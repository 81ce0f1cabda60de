"""The one comparison engine: two runners on the same samples, each fed in its own input layout, and
their outputs paired. Conversion parity (edgekit.parity: max |Δ| per output) and drift validation
(edgekit.validate: agreement, KL, accuracy) are two summaries of what this yields."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import BadInput

if TYPE_CHECKING:
    from edgekit.artifact import Preprocessing
    from edgekit.data import Sample
    from edgekit.runtimes import Runner


def paired_outputs(
    reference: Runner, candidate: Runner, prep: Preprocessing, samples: Iterable[Sample]
) -> Iterator[tuple[Sample, list[np.ndarray], list[np.ndarray]]]:
    """(sample, reference outputs, candidate outputs) for each sample; BadInput when the two models do
    not have the same outputs (count and size)."""
    if len(reference.outputs()) != len(candidate.outputs()):
        raise BadInput(
            f"the reference has {len(reference.outputs())} outputs and the candidate {len(candidate.outputs())}",
            fix="compare two versions of the same model",
        )
    ref_spec, cand_spec = reference.inputs()[0], candidate.inputs()[0]
    for sample in samples:
        ref = reference.infer([sample.to_tensor(prep, ref_spec)])
        got = candidate.infer([sample.to_tensor(prep, cand_spec)])
        for index, (a, b) in enumerate(zip(ref, got)):
            if a.size != b.size:
                raise BadInput(
                    f"output {index} has {a.size} values in the reference and {b.size} in the candidate",
                    fix="compare two versions of the same model",
                )
        yield sample, ref, got
