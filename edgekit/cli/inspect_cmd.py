"""`edgekit inspect MODEL`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import build_load, json_option, load_options, model_argument


@click.command("inspect")
@model_argument
@load_options
@json_option
def inspect_command(
    model: Path,
    arch: str | None,
    arch_kwarg: tuple[str, ...],
    trust_pickle: bool,
    input_shape: str | None,
    as_json: bool,
) -> None:
    """Show MODEL's format, inputs/outputs, parameters, MACs, ops, precision and lineage."""
    from edgekit.inspectors import inspect_model
    from edgekit.report import print_inspect, print_json

    report = inspect_model(model, build_load(arch, arch_kwarg, trust_pickle, input_shape))
    print_json(report.to_dict()) if as_json else print_inspect(report)
