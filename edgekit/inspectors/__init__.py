"""`inspect_model`: format, io, parameters, MACs, op histogram, weight precision, sidecar facts.

One inspector module per format family, named in edgekit.formats.FAMILIES.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.artifact import ModelArtifact, TensorSpec, read_artifact
from edgekit.formats import FAMILIES
from edgekit.fsutil import size_of
from edgekit.loaders import LoadOptions
from edgekit.runtimes import open_runner

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


@dataclasses.dataclass
class GraphFacts:
    """What an inspector reads from the model itself."""

    params: int | None = 0
    macs: int | None = None
    ops: Counter = dataclasses.field(default_factory=Counter)
    weight_dtypes: Counter = dataclasses.field(default_factory=Counter)  # dtype -> number of weight values
    note: str | None = None  # why some facts are missing


@dataclasses.dataclass
class InspectReport:
    """Everything `edgekit inspect` prints."""

    path: Path
    format: str
    size_bytes: int
    runtime: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    facts: GraphFacts
    artifact: ModelArtifact

    def precision_shares(self) -> dict[str, float]:
        """Share of weight values per dtype, e.g. {'float32': 0.98, 'int8': 0.02}."""
        total = sum(self.facts.weight_dtypes.values())
        return {k: v / total for k, v in self.facts.weight_dtypes.most_common()} if total else {}

    def to_dict(self) -> Json:
        """JSON form for --json."""
        side = self.artifact.to_dict()
        return {
            "path": str(self.path),
            "format": self.format,
            "size_bytes": self.size_bytes,
            "runtime": self.runtime,
            "inputs": [dataclasses.asdict(s) for s in self.inputs],
            "outputs": [dataclasses.asdict(s) for s in self.outputs],
            "params": self.facts.params,
            "macs": self.facts.macs,
            "ops": dict(self.facts.ops.most_common()),
            "precision": self.precision_shares(),
            "preprocessing": side["preprocessing"],
            "labels": len(self.artifact.labels or []),
            "lineage": self.artifact.lineage,
        }


def inspect_model(path: Path, load: LoadOptions | None = None) -> InspectReport:
    """Open the model with its runner and read its graph facts."""
    artifact = read_artifact(path)
    module_name, _, function = FAMILIES[artifact.format.family].inspector.partition(":")
    inspector = getattr(importlib.import_module(module_name), function)
    with open_runner(artifact, load=load) as runner:
        facts = inspector(artifact, runner)
        inputs, outputs, runtime = runner.inputs(), runner.outputs(), runner.describe()
    return InspectReport(path, artifact.format.value, size_of(path), runtime, inputs, outputs, facts, artifact)
