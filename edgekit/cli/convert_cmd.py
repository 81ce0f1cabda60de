"""`edgekit convert MODEL --to onnx|tflite`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import force_option, json_option, load_options, model_argument, preprocessing_options


@click.command("convert")
@model_argument
@click.option("--to", "target", type=click.Choice(["onnx", "tflite"]), required=True, help="Target format.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: beside MODEL).")
@click.option("--opset", type=int, help="ONNX opset (default: 18 for torch.export, 17 otherwise).")
@click.option("--tolerance", type=float, help="Max |Δ| of any output vs the source (default 1e-3 for fp32).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), help="Min top-1 agreement (default 1.0 for fp32).")
@click.option(
    "--check-images",
    type=click.IntRange(1, 10000),
    default=16,
    show_default=True,
    help="Real-photo crops used for the parity check.",
)
@click.option("--data", type=click.Path(path_type=Path), help="Photo folder for the check (default: bundled photos).")
@load_options
@preprocessing_options
@force_option
@json_option
def convert_command(
    model: Path,
    target: str,
    output: Path | None,
    data: Path | None,
    load: Any,
    preprocess: Any,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **options: Any,
) -> None:
    """Convert MODEL to ONNX or TFLite, check it against MODEL on real photos, write it with a sidecar."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.convert import ConvertConfig
    from edgekit.report import print_convert, print_json, progress_printer

    outcome = run_single_step(
        "convert", ConvertConfig(to=target, **options), model, output=output, load=load, preprocess=preprocess,
        labels=labels_file, data={"validation": data}, progress=progress_printer(quiet=as_json), force=force,
    )  # fmt: skip
    print_json(outcome.report.to_dict()) if as_json else print_convert(outcome.report)
