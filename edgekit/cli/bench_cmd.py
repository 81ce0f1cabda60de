"""`edgekit bench MODEL... --device NAME`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option
from edgekit.recipes.steps.bench import BenchConfig
from edgekit.schema import cli_options


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="Device profile name (edgekit devices) or .yaml file.")
@cli_options(BenchConfig)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Also write the results as CSV.")
@json_option
def bench_command(
    models: tuple[Path, ...],
    device: str,
    csv_path: Path | None,
    as_json: bool,
    **settings: object,
) -> None:
    """Measure each MODEL on DEVICE in a fresh process (on a board with --remote); several print side by side."""
    import dataclasses

    from edgekit.recipes.steps import run_single_step
    from edgekit.report import print_bench, print_json, progress_printer, write_bench_csv
    from edgekit.schema import build

    config = build(BenchConfig, settings, from_cli=True)
    progress = progress_printer(quiet=as_json)
    outcome = run_single_step("bench", config, models[0], models=list(models), device=device, progress=progress)
    results = outcome.report
    if csv_path:
        write_bench_csv(csv_path, results)
    print_json([dataclasses.asdict(r) for r in results]) if as_json else print_bench(results)
