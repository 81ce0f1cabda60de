"""`edgekit bench MODEL... --device NAME`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="Device profile name (edgekit devices) or .yaml file.")
@click.option(
    "--threads", type=click.IntRange(1, 256), help="Runtime threads (default: the profile's, else all cores)."
)
@click.option("--runs", type=click.IntRange(1), default=100, show_default=True, help="Minimum timed runs.")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True, help="Untimed runs first.")
@click.option("--duration", type=click.FloatRange(0), help="Also run for at least this many seconds.")
@click.option(
    "--allow-fallback", is_flag=True, help="Run on the CPU when the device's delegate is missing (and say so)."
)
@click.option("--remote", help="Run on a board over SSH, e.g. pi@raspberrypi.local (key-based login).")
@click.option("--remote-python", default="python3", show_default=True, help="The board's Python with edgekit[pi].")
@click.option("--ssh-option", multiple=True, help="ssh -o option for --remote, e.g. Port=2222 (repeatable).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Also write the results as CSV.")
@json_option
def bench_command(
    models: tuple[Path, ...],
    device: str,
    threads: int | None,
    runs: int,
    warmup: int,
    duration: float | None,
    allow_fallback: bool,
    remote: str | None,
    remote_python: str,
    ssh_option: tuple[str, ...],
    csv_path: Path | None,
    as_json: bool,
) -> None:
    """Measure each MODEL on DEVICE in a fresh process (on a board with --remote); several print side by side."""
    import dataclasses

    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.bench import BenchConfig
    from edgekit.report import print_bench, print_json, progress_printer, write_bench_csv

    config = BenchConfig(
        runs=runs, warmup=warmup, threads=threads, remote=remote, remote_python=remote_python,
        ssh_options=list(ssh_option), duration=duration, allow_fallback=allow_fallback,
    )  # fmt: skip
    progress = progress_printer(quiet=as_json)
    outcome = run_single_step("bench", config, models[0], models=list(models), device=device, progress=progress)
    results = outcome.report
    if csv_path:
        write_bench_csv(csv_path, results)
    print_json([dataclasses.asdict(r) for r in results]) if as_json else print_bench(results)
