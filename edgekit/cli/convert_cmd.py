"""`edgekit convert MODEL --to onnx|tflite`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import force_option, json_option, load_options, model_argument, preprocessing_options
from edgekit.convert.settings import ConvertSettings
from edgekit.schema import cli_options

if TYPE_CHECKING:
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides


@click.command("convert")
@model_argument
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: beside MODEL).")
@cli_options(ConvertSettings)
@click.option("--data", type=click.Path(path_type=Path), help="Photo folder for the check (default: bundled photos).")
@load_options
@preprocessing_options
@force_option
@json_option
def convert_command(
    model: Path,
    output: Path | None,
    data: Path | None,
    load: LoadOptions,
    preprocess: PreprocessOverrides,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **settings: object,
) -> None:
    """Convert MODEL to ONNX or TFLite, check it against MODEL on real photos, write it with a sidecar."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.convert import ConvertConfig
    from edgekit.report import print_convert, print_json, progress_printer
    from edgekit.schema import build

    config = build(ConvertConfig, settings, from_cli=True)
    outcome = run_single_step(
        "convert", config, model, output=output, load=load, preprocess=preprocess,
        labels=labels_file, data={"validation": data}, progress=progress_printer(quiet=as_json), force=force,
    )  # fmt: skip
    print_json(outcome.report.to_dict()) if as_json else print_convert(outcome.report)
