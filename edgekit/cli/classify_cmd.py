"""`edgekit classify MODEL IMAGE...`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import board_options, json_option, load_options, model_argument, preprocessing_options

if TYPE_CHECKING:
    from edgekit.board import BoardChoice
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides


@click.command("classify")
@model_argument
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=5, show_default=True, help="Classes to show.")
@click.option("--threads", type=click.IntRange(1, 256), help="Runtime threads.")
@board_options
@load_options
@preprocessing_options
@json_option
def classify_command(
    model: Path,
    images: tuple[Path, ...],
    top_k: int,
    threads: int | None,
    load: LoadOptions,
    preprocess: PreprocessOverrides,
    labels_file: Path | None,
    as_json: bool,
    board: BoardChoice,
) -> None:
    """Print the top-k classes for each IMAGE, using MODEL's stored preprocessing and labels."""
    from edgekit.classify import classify_images
    from edgekit.convert.api import read_labels
    from edgekit.report import print_classify, print_json, progress_printer

    where = board.open(progress_printer(quiet=as_json))
    runtime, results = classify_images(
        model, list(images), k=top_k, labels=read_labels(labels_file), threads=threads, preprocess=preprocess,
        load=load, board=where,
    )  # fmt: skip
    if as_json:
        print_json({"model": str(model), "runtime": runtime, "results": [dataclasses.asdict(r) for r in results]})
    else:
        print_classify(runtime, results)
