"""`edgekit board prepare DEVICE`: make (or update) the device's emulated board."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option


@click.group("board")
def board_group() -> None:
    """Emulated boards: the device's own ARM kernels under QEMU (for validate --emulate)."""


@board_group.command("prepare")
@click.argument("device")
@click.option(
    "--from",
    "source",
    type=click.Choice(["checkout", "pypi"]),
    default="checkout",
    show_default=True,
    help="Install edgekit[pi] in the board from this checkout (a wheel built here) or from PyPI.",
)
@click.option(
    "--opencv",
    type=click.Choice(["pip", "system"]),
    default="pip",
    show_default=True,
    help="pip: edgekit[pi] as pip installs it (315 MB venv). system: as on Raspberry Pi OS, apt's "
    "python3-opencv (GStreamer) and numpy 1.24 with tflite-runtime and onnxruntime (101 MB venv).",
)
@json_option
def prepare_command(device: str, source: str, opencv: str, as_json: bool) -> None:
    """Debootstrap DEVICE's Debian arm64 board with edgekit[pi] in it, cached under ~/.cache/edgekit/boards
    (about 6 minutes the first time, 4 more for --opencv system; then only edgekit is reinstalled when
    this checkout changes)."""
    from edgekit.board import Emulation
    from edgekit.board_prepare import prepare_board
    from edgekit.devices import load_profile
    from edgekit.report import print_json, progress_printer

    profile = load_profile(device)
    emulation = Emulation.from_profile(profile.name, profile.emulate)
    board = prepare_board(profile.name, emulation, progress_printer(quiet=as_json), source, opencv)
    facts = {"device": profile.name, "board": board.describe(), "root": str(board.root), "qemu_cpu": emulation.cpu}
    facts["python"] = board.python
    if as_json:
        print_json(facts)
    else:
        click.echo(f"{board.describe()} is ready at {board.root}")
