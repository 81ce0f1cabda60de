"""`edgekit prune MODEL --amount 0.3 [--structured|--unstructured] [--recover distill --data DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import force_option, json_option, load_options, model_argument, preprocessing_options
from edgekit.prune.settings import PruneSettings
from edgekit.schema import cli_options

if TYPE_CHECKING:
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides


@click.command("prune")
@model_argument
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Recovery images: any photos for distill, class folders for finetune.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output (default: MODEL.prunedNN.<suffix>).")
@cli_options(PruneSettings)
@load_options
@preprocessing_options
@force_option
@json_option
def prune_command(
    model: Path,
    data: Path | None,
    output: Path | None,
    load: LoadOptions,
    preprocess: PreprocessOverrides,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **settings: object,
) -> None:
    """Prune MODEL (PyTorch or Keras), optionally train it back, and write a model of the same kind
    with a sidecar recording MACs, params and the recovery history."""
    from edgekit.errors import BadInput
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.prune import PruneConfig
    from edgekit.report import print_json, print_prune, progress_printer
    from edgekit.schema import build

    recover = settings["recover"]
    if recover and data is None:
        raise BadInput(f"--recover {recover} needs images", fix="pass --data DIR")
    mode = (recover or "distill") if data is not None else None
    config = build(PruneConfig, settings | {"recover": mode}, from_cli=True)
    outcome = run_single_step(
        "prune", config, model, output=output, load=load, preprocess=preprocess, labels=labels_file,
        data={"calibration" if mode == "distill" else "labelled": data}, progress=progress_printer(quiet=as_json),
        force=force,
    )  # fmt: skip
    report = outcome.report
    print_json(report.to_dict()) if as_json else print_prune(report)
