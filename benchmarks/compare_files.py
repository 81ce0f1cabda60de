"""Time and compare ready-made int8 files against their fp32 file, side by side in one run, on the
held-out crops of `make bench-quantize` (200 at seed 2, 400 more at seed 11): for a machine where the
files cannot be made (no TensorFlow or torch there) but their runtime installs.

Run: python benchmarks/compare_files.py FP32 CANDIDATE [CANDIDATE ...]
(EDGEKIT_BENCH_CORES=0,1 times on those cores alone, one thread each, as benchmarks/quantize.py does.)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from quantize import pinned_cores  # this folder (run as a script)
from rich.console import Console
from rich.table import Table

from edgekit.artifact import read_artifact
from edgekit.data import DataSource
from edgekit.quantize.cpu import host_preset
from edgekit.runtimes import open_runner
from edgekit.samples import write_crops
from edgekit.timing import alternating_p50
from edgekit.validate import compare_on_data


def main() -> None:
    """One table: size, p50 in turns, agreement with fp32 on the 200 and the 400 crops, KL, p gap."""
    reference_path, *candidates = (Path(arg) for arg in sys.argv[1:])
    console = Console(width=130)
    console.print(f"host CPU preset: {host_preset().name}")
    artifacts = [read_artifact(path) for path in (reference_path, *candidates)]
    prep = artifacts[0].preprocessing
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-files-") as tmp:
        held_out, more = write_crops(Path(tmp) / "eval", 200, seed=2), write_crops(Path(tmp) / "more", 400, seed=11)
        sample = next(iter(DataSource(held_out[0].parent, count=1)))
        with pinned_cores() as threads:
            feed = lambda runner: sample.to_tensor(prep, runner.inputs()[0])  # noqa: E731
            times = alternating_p50(artifacts, feed, rounds=5, threads=threads)
        table = Table(title=f"{reference_path.name}: int8 files vs fp32 (200 held-out crops; 400 more)")
        for column in ("model", "size", "p50", "vs fp32", "top-1 agr.", "400 more", "mean KL", "p gap"):
            table.add_column(column)
        table.add_row(reference_path.name, "100%", f"{times[0]:.2f} ms", "1.00x", "", "", "", "")
        with open_runner(artifacts[0]) as reference:
            for artifact, ms in zip(artifacts[1:], times[1:]):
                with open_runner(artifact) as runner:
                    report = compare_on_data(reference, runner, prep, DataSource(held_out[0].parent))
                    wider = compare_on_data(reference, runner, prep, DataSource(more[0].parent))
                gap = report.confident_probability_gap
                table.add_row(
                    artifact.path.name,
                    f"{artifact.path.stat().st_size / reference_path.stat().st_size:.2%}",
                    f"{ms:.2f} ms",
                    f"{times[0] / ms:.2f}x",
                    f"{report.top1_agreement:.1%}",
                    f"{wider.top1_agreement:.2%}",
                    f"{report.mean_kl:.3f}",
                    f"{gap:.3f}" if gap is not None else "",
                )
    console.print(table)


if __name__ == "__main__":
    main()
