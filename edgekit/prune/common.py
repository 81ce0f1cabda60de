"""Pieces both pruners share: recovery bookkeeping, the output sidecar, compressed size."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.artifact import ModelArtifact, TensorSpec, lineage_entry
from edgekit.formats import Format
from edgekit.fsutil import files_of
from edgekit.preprocess import guess_layout, resolve_preprocessing
from edgekit.prune import PruneOptions, PruneReport
from edgekit.prune.recover import RecoveryData, Trainable, evaluate, run_recovery

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


def recover(
    report: PruneReport,
    student: Trainable,
    data: RecoveryData,
    options: PruneOptions,
    progress: Callable[[str], None],
) -> None:
    """Measure the pruned model, realign it (norm statistics or refit readers), train it back; record
    it all in `report`."""
    assert options.recover is not None
    report.holdout_images = len(data.holdout)
    report.accuracy_original = (
        float((data.teacher_holdout.argmax(axis=1) == data.labels_holdout).mean())
        if data.labels_holdout is not None
        else None
    )
    report.agreement_pruned, report.accuracy_pruned = evaluate(student, data)
    progress(f"held-out agreement with the original right after pruning: {report.agreement_pruned:.1%}")
    report.realigned = student.realign(data.train, options.recover.batch_size)
    report.agreement_realigned, _ = evaluate(student, data)
    progress(f"held-out agreement after the {report.realigned}: {report.agreement_realigned:.1%}")
    report.history = run_recovery(student, data, options.recover, options.seed, progress)
    # Measured on the model as written: the kept epoch is chosen by accuracy when fine-tuning, and may
    # be the untrained state when no epoch improved, so neither is the history's best agreement.
    report.agreement_recovered, report.accuracy_recovered = evaluate(student, data)


def write_sidecar(
    source: ModelArtifact, report: PruneReport, fmt: Format, arch: Json | None, input_shape: list[int]
) -> ModelArtifact:
    """The pruned model's sidecar: the source's io, preprocessing and labels, plus the prune record."""
    inputs = source.inputs or [TensorSpec("input", list(input_shape), layout=guess_layout(list(input_shape)))]
    artifact = dataclasses.replace(
        source,
        path=report.output,
        format=fmt,
        arch=arch,
        inputs=inputs,
        preprocessing=resolve_preprocessing(source.preprocessing, report.options.preprocess),
        labels=report.options.labels or source.labels,
        lineage=[
            *source.lineage,
            lineage_entry("prune", source.path, {**report.options.to_dict(), **report.summary()}),
        ],
    )
    artifact.save()
    return artifact


def deflated_size(path: Path) -> int:
    """Size of a file (or folder) after zlib compression: what zeroed weights save on disk or download."""
    compressor, total = zlib.compressobj(6), 0
    for file in files_of(path):
        total += len(compressor.compress(file.read_bytes()))
    return total + len(compressor.flush())
