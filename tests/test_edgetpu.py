"""Edge TPU: the pre-compile check on real quantized models and the compiler-log parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.edgetpu import check_model, parse_compiler_log
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model

# The documented shape of edgetpu_compiler's output (summary, then the operator table); numbers are ours.
PARTIAL_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 612 ms.

Input model: tiny.tflite
Input size: 41.20KiB
Output model: tiny_edgetpu.tflite
Output size: 80.50KiB
On-chip memory used for caching model parameters: 52.25KiB
On-chip memory remaining for caching model parameters: 7.95MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 12
Operation log: tiny_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower.
Number of operations that will run on Edge TPU: 10
Number of operations that will run on CPU: 2

Operator                       Count      Status

CONV_2D                        6          Mapped to Edge TPU
DEPTHWISE_CONV_2D              2          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Operation is otherwise supported, but not mapped due to some unspecified limitation
DEQUANTIZE                     1          Operation is working on an unsupported data type
"""
FULL_LOG = """Edge TPU Compiler version 16.0.384591198
Input model: m.tflite
Input size: 2.63MiB
Output model: m_edgetpu.tflite
Output size: 2.90MiB
On-chip memory used for caching model parameters: 2.71MiB
On-chip memory remaining for caching model parameters: 4.94MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 67

Operator                       Count      Status

CONV_2D                        35         Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
"""


def test_compiler_log_parser_partial() -> None:
    parsed = parse_compiler_log(PARTIAL_LOG)
    assert parsed["version"] == "16.0.384591198" and parsed["subgraphs"] == 1 and parsed["total_ops"] == 12
    assert (parsed["ops_on_edgetpu"], parsed["ops_on_cpu"]) == (10, 2)
    assert parsed["on_chip_used"] == "52.25KiB" and parsed["off_chip_used"] == "0.00B"
    unmapped = [row["op"] for row in parsed["operators"] if not row["mapped"]]
    assert unmapped == ["SOFTMAX", "DEQUANTIZE"] and len(parsed["operators"]) == 6


def test_compiler_log_parser_fully_mapped_and_garbage() -> None:
    parsed = parse_compiler_log(FULL_LOG)
    assert (parsed["ops_on_edgetpu"], parsed["ops_on_cpu"]) == (67, 0)
    assert sum(row["count"] for row in parsed["operators"]) == 45
    empty = parse_compiler_log("segmentation fault")
    assert empty["total_ops"] is None and empty["operators"] == []


@pytest.fixture(scope="module")
def quantized(keras_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgekit.samples import write_crops

    folder = tmp_path_factory.mktemp("edgetpu")
    calib = write_crops(folder / "calib", 16, seed=1, size=64)[0].parent
    out = {}
    for io_dtype in ("uint8", "float"):
        options = QuantizeOptions(calib=calib, val=calib, output=folder / f"k_{io_dtype}.tflite", io_dtype=io_dtype)
        out[io_dtype] = quantize_model(keras_models["keras"], options).output
    out["fp32"] = convert_model(
        keras_models["keras"], ConvertOptions(Format.TFLITE, output=folder / "k_fp32.tflite", check_images=2)
    ).output
    return out


def test_full_int8_model_maps_entirely(quantized: dict[str, Path]) -> None:
    report = check_model(quantized["uint8"])
    assert report.fully_mapped and report.tpu_ops == len(report.ops)
    ops = {op.op for op in report.ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= ops and "DELEGATE" not in ops
    assert not report.notes


def test_float_io_is_named_and_float_model_falls_back_at_once(quantized: dict[str, Path]) -> None:
    report = check_model(quantized["float"])
    assert any("--io-dtype uint8" in note for note in report.notes)
    assert {op.placement for op in report.ops if op.op in ("QUANTIZE", "DEQUANTIZE")} == {"CPU (IO conversion)"}
    float_report = check_model(quantized["fp32"])
    assert float_report.first_fallback is not None and float_report.first_fallback.index == 0
    assert "is float, not 8-bit quantized" in float_report.first_fallback.reason
    assert float_report.tpu_ops == 0


def test_compile_cli_without_the_compiler(quantized: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["compile", str(quantized["uint8"]), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fully_mapped"] and data["compiler"] is None
    assert any("apt-get install edgetpu-compiler" in note for note in data["notes"])
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    result = CliRunner().invoke(cli, ["compile", str(onnx_file)])
    assert result.exit_code == 6 and "is not a TFLite model" in result.stderr


def test_compile_never_replaces_an_existing_edgetpu_model(quantized: dict[str, Path], tmp_path: Path) -> None:
    """edgetpu_compiler writes MODEL_edgetpu.tflite: an existing one is refused before anything runs
    (exit 3) unless --force, whether or not the compiler is installed."""
    model = quantized["uint8"]
    existing = tmp_path / f"{model.stem}_edgetpu.tflite"
    existing.write_bytes(b"the user's compiled model")
    result = CliRunner().invoke(cli, ["compile", str(model), "--out-dir", str(tmp_path)])
    assert result.exit_code == 3 and "already exists" in result.stderr and "--force" in result.stderr
    assert existing.read_bytes() == b"the user's compiled model"
    result = CliRunner().invoke(cli, ["compile", str(model), "--out-dir", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.stderr
