"""Edge TPU: check a TFLite model against the Edge TPU's rules before compiling, predict the first op
that would fall back to the CPU and why, then run `edgetpu_compiler` when installed and parse its log.

Rules from Coral's model requirements (g.co/coral/model-reqs): 8-bit quantized tensors, static
shapes, constant parameters, at most 3 non-trivial dimensions, supported operations only. The
compiler maps ops to the Edge TPU until the first unsupported one; everything after runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import UnsupportedRoute
from edgekit.formats import Format, detect_format
from edgekit.runtimes.tflite import TFLiteGraph, read_graph

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

# TFLite builtin ops the Edge TPU runs, with the limitation edgekit checks (None: no extra check).
SUPPORTED_OPS: dict[str, str | None] = {
    name: None
    for name in (
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MINIMUM",
        "MUL",
        "PACK",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "SQUARED_DIFFERENCE",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    )
}
SUPPORTED_OPS["MEAN"] = "reduces along x and/or y only"
SUPPORTED_OPS["PAD"] = "pads along x and/or y only"
INSTALL_COMPILER = (
    "install edgetpu_compiler (x86-64 Debian/Ubuntu, from Coral's package repository: "
    "sudo apt-get install edgetpu-compiler)"
)


@dataclasses.dataclass
class OpCheck:
    """One operator's verdict."""

    index: int
    op: str
    placement: str  # "Edge TPU", "CPU" or "CPU (IO conversion)"
    reason: str = ""


@dataclasses.dataclass
class EdgeTpuCheck:
    """The pre-compile check: per-op placement, the first fallback, and the verdict."""

    model: str
    ops: list[OpCheck]
    first_fallback: OpCheck | None
    notes: list[str]
    compiler: dict[str, object] | None = None

    @property
    def tpu_ops(self) -> int:
        """Ops predicted to run on the Edge TPU."""
        return sum(op.placement == "Edge TPU" for op in self.ops)

    @property
    def fully_mapped(self) -> bool:
        """True when nothing but IO conversion runs on the CPU."""
        return self.first_fallback is None


def check_model(path: Path) -> EdgeTpuCheck:
    """Check a .tflite against the Edge TPU's rules without the compiler."""
    if detect_format(path) is not Format.TFLITE:
        raise UnsupportedRoute(
            f"{path} is not a TFLite model",
            fix="quantize it first: edgekit quantize MODEL --format tflite --io-dtype uint8 --calib DIR",
        )
    graph = read_graph(path)
    checks, fallback = _place_ops(graph)
    return EdgeTpuCheck(str(path), checks, fallback, _io_notes(graph.interpreter))


def _place_ops(graph: TFLiteGraph) -> tuple[list[OpCheck], OpCheck | None]:
    """Each op's predicted placement: Edge TPU until the first rule violation, CPU from there on."""
    interpreter, tensors, ops = graph.interpreter, graph.tensors, graph.ops
    activations = {int(i) for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    checks: list[OpCheck] = []
    fallback: OpCheck | None = None
    for position, op in enumerate(ops):
        name = op["op_name"]
        if (name == "QUANTIZE" and _is_float(tensors, op["inputs"])) or name == "DEQUANTIZE":
            checks.append(OpCheck(position, name, "CPU (IO conversion)"))
        elif fallback is not None:
            checks.append(OpCheck(position, name, "CPU", "after the first fallback"))
        elif reason := _violation(op, tensors, activations, interpreter):
            fallback = OpCheck(position, name, "CPU", reason)
            checks.append(fallback)
        else:
            checks.append(OpCheck(position, name, "Edge TPU"))
    return checks, fallback


def _io_notes(interpreter: Interpreter) -> list[str]:
    notes = []
    for kind, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        for detail in details:
            dtype = np.dtype(detail["dtype"]).name
            if dtype not in ("uint8", "int8"):
                notes.append(
                    f"{kind} {detail['name']} is {dtype}: a (de)quantize op runs on the CPU; "
                    "quantize with --io-dtype uint8 to avoid it"
                )
            batch = int(detail["shape"][0]) if len(detail["shape"]) else 1
            if batch != 1:
                notes.append(f"{kind} {detail['name']} has batch {batch}: the Edge TPU needs batch 1")
    return notes


def _is_float(tensors: dict[int, Any], indices: Any) -> bool:
    return any(np.dtype(tensors[int(i)]["dtype"]).kind == "f" for i in indices if int(i) >= 0)


def _violation(op: dict[str, object], tensors: dict[int, Any], activations: set[int], interpreter: Interpreter) -> str:
    name = op["op_name"]
    if name not in SUPPORTED_OPS:
        return f"{name} is not an Edge TPU operation"
    for index in [int(i) for i in (*op["inputs"], *op["outputs"]) if int(i) >= 0]:
        tensor = tensors[index]
        kind = np.dtype(tensor["dtype"]).kind
        if kind == "f":
            return f"tensor {tensor['name']!r} is float, not 8-bit quantized"
        if any(d < 0 for d in tensor.get("shape_signature", tensor["shape"])):
            return f"tensor {tensor['name']!r} has a dynamic shape"
        shape = [int(d) for d in tensor["shape"]]
        if index in activations and len(shape) > 3 and any(d > 1 for d in shape[:-3]):
            return f"tensor {tensor['name']!r} has shape {shape}: only the 3 innermost dims may exceed 1"
    if name in ("MEAN", "PAD"):
        return _spatial_only(op, tensors, interpreter)
    return ""


def _spatial_only(op: dict[str, object], tensors: dict[int, Any], interpreter: Interpreter) -> str:
    """MEAN and PAD must act on the x/y (H/W) axes of an NHWC tensor only."""
    try:
        values = np.asarray(interpreter.get_tensor(int(op["inputs"][1])))
    except ValueError:
        return ""
    if op["op_name"] == "MEAN":
        axes = {int(a) % 4 for a in values.ravel()}
        return "" if axes <= {1, 2} else f"MEAN over axes {sorted(axes)}: the Edge TPU reduces along x/y only"
    padded = [axis for axis, row in enumerate(values.reshape(-1, 2)) if any(row)]
    return "" if set(padded) <= {1, 2} else f"PAD along axes {padded}: the Edge TPU pads along x/y only"


def compile_model(path: Path, out_dir: Path) -> dict[str, object] | None:
    """Run edgetpu_compiler when installed; its parsed log, or None when it is not installed."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="edgekit-edgetpu-", dir=out_dir) as tmp:
        done = subprocess.run([compiler, "-s", "-o", tmp, str(path)], capture_output=True, text=True, check=False)
        parsed = parse_compiler_log(done.stdout + done.stderr)
        produced = list(Path(tmp).glob("*_edgetpu.tflite"))
        if done.returncode == 0 and produced:
            target = out_dir / produced[0].name
            produced[0].replace(target)  # same filesystem: an atomic rename of a finished file
            parsed["output_path"] = str(target)
        parsed["returncode"] = done.returncode
    return parsed


_FIELDS = {
    "input_model": r"Input model:\s*(\S+)",
    "input_size": r"Input size:\s*([\d.]+\s*\w+)",
    "output_model": r"Output model:\s*(\S+)",
    "output_size": r"Output size:\s*([\d.]+\s*\w+)",
    "on_chip_used": r"On-chip memory used for caching model parameters:\s*([\d.]+\s*\w+)",
    "on_chip_remaining": r"On-chip memory remaining for caching model parameters:\s*([\d.]+\s*\w+)",
    "off_chip_used": r"Off-chip memory used for streaming uncached model parameters:\s*([\d.]+\s*\w+)",
    "subgraphs": r"Number of Edge TPU subgraphs:\s*(\d+)",
    "total_ops": r"Total number of operations:\s*(\d+)",
    "ops_on_edgetpu": r"Number of operations that will run on Edge TPU:\s*(\d+)",
    "ops_on_cpu": r"Number of operations that will run on CPU:\s*(\d+)",
    "version": r"Edge TPU Compiler version\s*(\S+)",
}
_INT_FIELDS = {"subgraphs", "total_ops", "ops_on_edgetpu", "ops_on_cpu"}
_OPERATOR_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(text: str) -> dict[str, object]:
    """edgetpu_compiler's summary and operator table; missing fields stay None (wording changes degrade)."""
    parsed: dict[str, object] = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, text)
        value = match.group(1).strip() if match else None
        parsed[key] = int(value) if value is not None and key in _INT_FIELDS else value
    if parsed["total_ops"] is not None and parsed["ops_on_edgetpu"] is None and "not all operations" not in text:
        parsed["ops_on_edgetpu"], parsed["ops_on_cpu"] = parsed["total_ops"], 0  # everything mapped
    table = text.split("Operator", 1)[1] if re.search(r"^Operator\s+Count\s+Status", text, re.M) else ""
    parsed["operators"] = [
        {
            "op": m.group(1),
            "count": int(m.group(2)),
            "status": m.group(3),
            "mapped": m.group(3).startswith("Mapped to Edge TPU"),
        }
        for m in (_OPERATOR_ROW.match(line) for line in table.splitlines())
        if m
    ]
    return parsed


def check_and_compile(path: Path, out_dir: Path | None = None, force: bool = False) -> EdgeTpuCheck:
    """The check, then the compiler when installed (a note says how to install it otherwise). An
    existing MODEL_edgetpu.tflite in `out_dir` is refused unless `force`, before anything runs."""
    from edgekit.fsutil import refuse_to_replace

    refuse_to_replace((out_dir or path.parent) / f"{path.stem}_edgetpu.tflite", force)
    report = check_model(path)
    report.compiler = compile_model(path, out_dir or path.parent)
    if report.compiler is None:
        report.notes.append(f"edgetpu_compiler is not installed, so only the pre-compile check ran; {INSTALL_COMPILER}")
    return report
