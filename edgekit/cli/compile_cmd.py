"""`edgekit compile MODEL.tflite --target edgetpu`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import force_option, json_option, model_argument
from edgekit.recipes.steps.compile import CompileConfig
from edgekit.schema import cli_options


@click.command("compile")
@model_argument
@click.option("--target", type=click.Choice(["edgetpu"]), default="edgetpu", show_default=True)
@click.option(
    "-o", "--out-dir", type=click.Path(path_type=Path), help="Where the compiled model goes (default: beside MODEL)."
)
@cli_options(CompileConfig)
@force_option
@json_option
def compile_command(
    model: Path, target: str, out_dir: Path | None, as_json: bool, force: bool, **settings: object
) -> None:
    """Check a full-int8 TFLite model against the Edge TPU's rules (which op would fall back to the
    CPU, and why), then run edgetpu_compiler when it is installed and summarise its log."""
    import dataclasses

    from edgekit.fsutil import check_output_dir
    from edgekit.recipes.steps import run_single_step
    from edgekit.report import print_edgetpu, print_json
    from edgekit.schema import build

    if out_dir is not None:
        check_output_dir(out_dir / "x")
    report = run_single_step(
        "compile", build(CompileConfig, settings, from_cli=True), model, output=out_dir, force=force
    ).report
    if as_json:
        data = dataclasses.asdict(report)
        data.update(tpu_ops=report.tpu_ops, fully_mapped=report.fully_mapped)
        print_json(data)
    else:
        print_edgetpu(report)
