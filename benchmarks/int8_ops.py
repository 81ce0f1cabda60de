"""Where int8 gains time on this CPU: EfficientNet-Lite0 fp32 vs int8 (edgekit quantize) in onnxruntime,
per kind of convolution (pointwise 1x1, depthwise, full 3x3 stem) and per other operator.

onnxruntime's own profiler times every kernel; the optimised graph tells each convolution's kind. The
quantize benchmark's speed floor (int8 >= 1.6x fp32 under --max-drift) depends on these ratios: keeping
a layer in float only ever gives back that layer's gain, so the all-int8 model bounds the speed-up.
Run: make bench-int8-ops
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import fetch_efficientnet_lite0
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops

RUNS = 300
CONV_KINDS = ("pointwise conv", "depthwise conv", "full conv")  # what conv_kinds calls them


def conv_kinds(model: Path, work: Path) -> dict[str, str]:
    """Node name -> pointwise / depthwise / full, read from onnxruntime's optimised graph."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(work / f"{model.stem}.optimized.onnx")
    options.log_severity_level = 3  # the NCHWc warning about saving a hardware-specific graph
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    kinds = {}
    for node in onnx.load(options.optimized_model_filepath).graph.node:
        if "Conv" in node.op_type:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attributes.get("group", 1) > 1:
                kinds[node.name] = "depthwise conv"
            else:
                kinds[node.name] = (
                    "pointwise conv" if list(attributes.get("kernel_shape", [])) == [1, 1] else "full conv"
                )
    return kinds


def kernel_times(model: Path, kinds: dict[str, str], threads: int, work: Path) -> dict[str, float]:
    """Mean µs per run of each convolution kind and each other operator, from onnxruntime's profiler."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(work / f"profile_{model.stem}_{threads}")
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    feed = {
        spec.name: np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in spec.shape], np.float32)
    }
    for _ in range(RUNS):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            totals[kinds.get(node, event["args"]["op_name"])] += event["dur"] / RUNS
    return dict(totals)


def main() -> None:
    """Profile both models at 1 and 2 threads and print the per-kind table."""
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-ops-") as tmp:
        work = Path(tmp)
        source = fetch_efficientnet_lite0()["pt2"]
        fp32 = convert_model(source, ConvertOptions(to=Format.ONNX, output=work / "fp32.onnx")).output
        calib = work / "calib"
        write_crops(calib, 100, seed=1)
        int8 = quantize_model(
            source, QuantizeOptions(format=Format.ONNX, calib=calib, calib_count=100, output=work / "int8.onnx")
        ).output
        kinds = {model: conv_kinds(model, work) for model in (fp32, int8)}
        for threads in (1, 2):
            float_times, quant_times = (kernel_times(model, kinds[model], threads, work) for model in (fp32, int8))
            table = Table(title=f"EfficientNet-Lite0 in onnxruntime, {threads} thread(s): µs per run (this machine)")
            for column in ("kernels", "fp32", "int8", "int8 speed-up"):
                table.add_column(column, justify="left" if column == "kernels" else "right")
            for kind in CONV_KINDS:
                ratio = float_times.get(kind, 0) / quant_times[kind] if quant_times.get(kind) else 0
                table.add_row(
                    kind, f"{float_times.get(kind, 0):.0f}", f"{quant_times.get(kind, 0):.0f}", f"{ratio:.2f}x"
                )
            other_float = sum(v for k, v in float_times.items() if k not in CONV_KINDS)
            other_quant = sum(v for k, v in quant_times.items() if k not in CONV_KINDS)
            table.add_row("everything else", f"{other_float:.0f}", f"{other_quant:.0f}", "")
            total_float, total_quant = sum(float_times.values()), sum(quant_times.values())
            table.add_row(
                "whole model", f"{total_float:.0f}", f"{total_quant:.0f}", f"{total_float / total_quant:.2f}x"
            )
            console.print(table)
        console.print("Profiling adds per-kernel overhead, so totals exceed bench's p50; the ratios are what matter.")


if __name__ == "__main__":
    main()
