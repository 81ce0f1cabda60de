"""`classify`: top-k labels for photos, using the model's stored preprocessing and labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgekit.artifact import read_artifact
from edgekit.board import Board, BoardRunner
from edgekit.errors import BadInput
from edgekit.loaders import LoadOptions
from edgekit.output_meaning import meaning_of, to_probabilities
from edgekit.preprocess import PreprocessOverrides, image_to_tensor, load_image, resolve_preprocessing
from edgekit.runtimes import open_runner


@dataclasses.dataclass
class Prediction:
    """One of the top-k classes for an image."""

    index: int
    label: str | None
    probability: float


@dataclasses.dataclass
class ImageResult:
    """The top-k predictions for one image."""

    image: str
    top: list[Prediction]


def top_k(probabilities: np.ndarray, k: int, labels: list[str] | None) -> list[Prediction]:
    """The k most likely classes, best first."""
    order = np.argsort(-probabilities)[:k]
    return [
        Prediction(int(i), labels[i] if labels and i < len(labels) else None, float(probabilities[i])) for i in order
    ]


def classify_images(
    model: Path,
    images: list[Path],
    *,
    k: int = 5,
    labels: list[str] | None = None,
    preprocess: PreprocessOverrides | None = None,
    load: LoadOptions | None = None,
    threads: int | None = None,
    board: Board | None = None,
) -> tuple[str, list[ImageResult]]:
    """Classify each image (on `board`'s kernels when given); returns the runtime description and the results."""
    artifact = read_artifact(model)
    prep = resolve_preprocessing(artifact.preprocessing, preprocess or PreprocessOverrides())
    if prep is None:
        raise BadInput(
            f"{model} has no stored preprocessing",
            fix="pass --preset imagenet|mobilenet|unit (or --mean/--std); convert stores it for next time",
        )
    labels = labels or artifact.labels
    photos = [(path, load_image(path)) for path in images]
    results = []
    with open_runner(artifact, threads=threads, load=load) as local:
        classes = local.outputs()[0].shape[-1]
        if labels and isinstance(classes, int) and classes != len(labels):
            raise BadInput(f"{len(labels)} labels for a model with {classes} classes", fix="give this model's labels")
        tensors = [image_to_tensor(image, prep, local.inputs()[0]) for _, image in photos]
        runner = local if board is None else BoardRunner.beside(local, board, tensors, threads)
        kind = meaning_of(runner).kind
        for (path, _), tensor in zip(photos, tensors):
            scores = runner.infer([tensor])[0]
            results.append(ImageResult(str(path), top_k(to_probabilities(scores, kind), k, labels)))
        return runner.describe(), results
