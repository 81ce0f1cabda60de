"""`edgekit quantize MODEL --calib DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import (
    board_options,
    force_option,
    json_option,
    load_options,
    model_argument,
    preprocessing_options,
)
from edgekit.quantize.settings import QuantizeSettings
from edgekit.schema import cli_options

if TYPE_CHECKING:
    from edgekit.board import BoardChoice
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides


@click.command("quantize")
@model_argument
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration images: folder, video or .npy.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: MODEL.<scheme>.<ext>).")
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    help="Validation images, disjoint from --calib (default: crops of the bundled photos).",
)
@click.option("--val-count", type=click.IntRange(1), default=200, show_default=True, help="Validation samples.")
@cli_options(QuantizeSettings)
@board_options
@load_options
@preprocessing_options
@force_option
@json_option
def quantize_command(
    model: Path,
    board: BoardChoice,
    output: Path | None,
    calib: Path | None,
    val: Path | None,
    val_count: int,
    load: LoadOptions,
    preprocess: PreprocessOverrides,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **settings: object,
) -> None:
    """Quantize MODEL, measure its drift against the float model on held-out images, and write it
    only if it meets --max-drift (exit 1 otherwise, with the per-layer evidence). With --emulate or
    --remote the drift is measured on the board's own kernels (--device rpi4 also picks ARM int8)."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.quantize import QuantizeConfig
    from edgekit.report import print_json, progress_printer
    from edgekit.report_drift import print_quantize
    from edgekit.schema import build

    config = build(QuantizeConfig, settings | board.fields(), from_cli=True)
    outcome = run_single_step(
        "quantize", config, model, output=output, load=load, preprocess=preprocess, labels=labels_file,
        data={"calibration": calib, "validation": val}, count=val_count, progress=progress_printer(quiet=as_json),
        force=force,
    )  # fmt: skip
    print_json(outcome.report.to_dict()) if as_json else print_quantize(outcome.report)
    if outcome.error is not None:
        raise outcome.error
