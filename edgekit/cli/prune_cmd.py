"""`edgekit prune MODEL --amount 0.3 [--structured|--unstructured] [--recover distill --data DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import force_option, json_option, load_options, model_argument, preprocessing_options


@click.command("prune")
@model_argument
@click.option("--amount", type=float, required=True, help="Share removed, between 0 and 1 (e.g. 0.3).")
@click.option(
    "--structured/--unstructured",
    default=True,
    show_default=True,
    help="Remove whole channels (smaller and faster), or zero single weights (only compresses better).",
)
@click.option("--importance", type=click.Choice(["l1", "l2", "taylor"]), default="l2", show_default=True)
@click.option(
    "--round-to",
    type=int,
    default=8,
    show_default=True,
    help="Keep channel counts a multiple of this (16 for VNNI/NEON int8 kernels).",
)
@click.option("--ignore", multiple=True, help="Layer name (or name prefix) to leave whole; default: the head.")
@click.option("--recover", type=click.Choice(["distill", "finetune"]), help="Train the pruned model back.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Recovery images: any photos for distill, class folders for finetune.",
)
@click.option("--data-count", type=click.IntRange(4), help="Use at most this many images from --data.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--temperature", type=float, default=2.0, show_default=True, help="Distillation temperature.")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True, help="Epochs without gain.")
@click.option("--no-flip", is_flag=True, help="Do not augment with random horizontal flips.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output (default: MODEL.prunedNN.<suffix>).")
@load_options
@preprocessing_options
@force_option
@json_option
def prune_command(
    model: Path,
    structured: bool,
    recover: str | None,
    data: Path | None,
    data_count: int | None,
    epochs: int,
    lr: float,
    batch_size: int,
    temperature: float,
    patience: int,
    no_flip: bool,
    ignore: tuple[str, ...],
    output: Path | None,
    load: Any,
    preprocess: Any,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **options: Any,
) -> None:
    """Prune MODEL (PyTorch or Keras), optionally train it back, and write a model of the same kind
    with a sidecar recording MACs, params and the recovery history."""
    from edgekit.errors import BadInput
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.prune import PruneConfig
    from edgekit.report import print_json, print_prune, progress_printer

    if recover and data is None:
        raise BadInput(f"--recover {recover} needs images", fix="pass --data DIR")
    mode = (recover or "distill") if data is not None else None
    config = PruneConfig(
        method="structured" if structured else "unstructured", ignore=list(ignore), recover=mode, epochs=epochs,
        lr=lr, batch_size=batch_size, temperature=temperature, patience=patience, data_count=data_count,
        flip=not no_flip, **options,
    )  # fmt: skip
    outcome = run_single_step(
        "prune", config, model, output=output, load=load, preprocess=preprocess, labels=labels_file,
        data={"calibration" if mode == "distill" else "labelled": data}, progress=progress_printer(quiet=as_json),
        force=force,
    )  # fmt: skip
    report = outcome.report
    print_json(report.to_dict()) if as_json else print_prune(report)
