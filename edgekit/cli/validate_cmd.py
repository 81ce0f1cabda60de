"""`edgekit validate REFERENCE CANDIDATE --data DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import board_options, json_option, load_options, preprocessing_options
from edgekit.recipes.steps import BOARD_FIELDS
from edgekit.recipes.steps.validate import ValidateConfig
from edgekit.schema import cli_options

if TYPE_CHECKING:
    from edgekit.board import BoardChoice
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides


@click.command("validate")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Images: folder (folder-per-class gives labels), video or .npy.",
)
@click.option("--count", type=click.IntRange(1), help="Use at most this many samples (seeded).")
@cli_options(ValidateConfig, skip=BOARD_FIELDS)
@board_options
@load_options
@preprocessing_options
@json_option
def validate_command(
    reference: Path,
    candidate: Path,
    data: Path,
    count: int | None,
    load: LoadOptions,
    preprocess: PreprocessOverrides,
    labels_file: Path | None,
    as_json: bool,
    board: BoardChoice,
    **settings: object,
) -> None:
    """Compare CANDIDATE with REFERENCE on the same images; exit 1 when a limit is broken."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.report import print_json, progress_printer
    from edgekit.report_drift import print_validation
    from edgekit.schema import build

    config = build(ValidateConfig, settings | board.fields(), from_cli=True)
    outcome = run_single_step(
        "validate", config, reference, models=[candidate], load=load, preprocess=preprocess, labels=labels_file,
        data={"validation": data}, count=count, progress=progress_printer(quiet=as_json),
    )  # fmt: skip
    report = outcome.report[0]
    print_json(report.to_dict()) if as_json else print_validation(report, f"{candidate.name} vs {reference.name}")
    if outcome.error is not None:
        raise outcome.error
