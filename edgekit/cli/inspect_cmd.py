"""`edgekit inspect MODEL`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekit.cli.options import json_option, load_options, model_argument

if TYPE_CHECKING:
    from edgekit.loaders import LoadOptions


@click.command("inspect")
@model_argument
@load_options
@json_option
def inspect_command(model: Path, load: LoadOptions, as_json: bool) -> None:
    """Show MODEL's format, inputs/outputs, parameters, MACs, ops, precision and lineage."""
    from edgekit.inspectors import inspect_model
    from edgekit.report import print_inspect, print_json

    report = inspect_model(model, load)
    print_json(report.to_dict()) if as_json else print_inspect(report)
