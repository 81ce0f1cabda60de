"""int8 arithmetic across x86 CPUs. Without VNNI, onnxruntime sums pairs of uint8 x int8 products in
16 bits (VPMADDUBSW), which saturate with 8-bit weights: so quantizing for another CPU on such a host
measures exact int8 arithmetic instead of the host's kernels, and running such a file there says so.

The AVX2 cases run real AVX2 kernels (tests/avx2.py: the host's own, or this host's with CPUID masked,
a stand-in for an AVX2 CPU named as such); the in-process cases run this host's kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import ModelArtifact, read_artifact
from edgekit.formats import Format
from edgekit.quantize import backends
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.backends import EXACT_ARITHMETIC
from edgekit.quantize.cpu import PRESETS, saturates_here
from edgekit.runtimes import open_runner
from edgekit.validate import validate_models
from tests.avx2 import run_on_avx2
from tests.qdq import qdq_layer

FULL = 255.0  # both inputs at the top of the uint8 range
TRUE_SUM = 2 * 255 * 127  # 64770: what an exact int32 accumulation gives
OUTPUT_STEP = 1024.0


def saturating_qdq(path: Path) -> Path:
    """A QDQ 1x1 convolution of two uint8 inputs with int8 weights 127 (onnxruntime fuses it into
    QLinearConv): at input 255 the pair sums to 64770, which a 16-bit VPMADDUBSW sum clips to 32767."""
    import onnx

    onnx.save(qdq_layer("Conv", np.full((1, 2, 1, 1), 127), [1, 2, 4, 4], output_step=OUTPUT_STEP), str(path))
    return path


def int32_values(path: Path) -> dict[str, list[int]]:
    """The int32 initializers (the biases) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}
    return {name: array.ravel().tolist() for name, array in arrays.items() if array.dtype == np.int32}


def exact_value() -> float:
    """The fused model's output with exact arithmetic: the true sum, requantized to the output step."""
    return round(TRUE_SUM / OUTPUT_STEP) * OUTPUT_STEP


def test_exact_int8_is_exact_on_this_host_and_the_kernels_saturate_only_where_expected(tmp_path: Path) -> None:
    """exact_int8 gives the true sum here; this host's fused kernels give it too unless it is an x86
    without VNNI, where they clip (which is what saturates_here says)."""
    artifact = ModelArtifact(saturating_qdq(tmp_path / "saturating.onnx"), Format.ONNX)
    outputs = {}
    for exact in (False, True):
        with open_runner(artifact, exact_int8=exact) as runner:
            outputs[exact] = float(runner.infer([np.full((1, 2, 4, 4), FULL, np.float32)])[0].ravel()[0])
    assert outputs[True] == exact_value()
    assert (outputs[False] != exact_value()) == saturates_here(PRESETS["x86-vnni"])


def test_on_avx2_kernels_edgekit_measures_exact_int8_for_vnni_targets_and_says_so(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On AVX2 kernels (stand-in: CPUID masked when this host has more): the host is taken for x86-avx2;
    its fused kernels clip the saturating model while exact_int8 does not; quantizing for x86-vnni
    measures exact int8 (so its bias correction is the target's) and the file's runner warns that it
    saturates here; the x86-avx2 preset (pair-limited weights) uses the host's kernels and carries no warning."""
    facts = run_on_avx2(
        tmp_path,
        "tests.avx2_probe",
        str(saturating_qdq(tmp_path / "saturating.onnx")),
        str(FULL),
        str(torch_models["pt2"]),
        str(crops["calib"]),
        str(tmp_path),
    )
    assert facts["preset"] == "x86-avx2"
    assert facts["saturating_exact"] == exact_value()
    assert facts["saturating_kernels"] < exact_value() * 0.6  # 32767 of 64770 survives the 16-bit sum
    assert facts["x86-vnni"]["arithmetic"] == EXACT_ARITHMETIC
    assert "saturate" in facts["x86-vnni"]["runtime"] and "--cpu x86-avx2" in facts["x86-vnni"]["runtime"]
    assert facts["x86-vnni"]["validate"] == facts["x86-vnni"]["runtime"]  # the validate report says it too
    assert facts["x86-avx2"]["arithmetic"] != EXACT_ARITHMETIC
    assert "saturate" not in facts["x86-avx2"]["runtime"] and facts["x86-avx2"]["validate"] is None
    # The same quantization here, told to measure exact int8: the same int32 biases (the AVX2 kernels'
    # clipped sums did not reach the bias correction)
    monkeypatch.setattr(backends, "saturates_here", lambda preset: True)
    here = quantize_model(
        torch_models["pt2"], QuantizeOptions(calib=crops["calib"], cpu="x86-vnni", output=tmp_path / "here.onnx")
    )
    assert here.settings["bias_correction"]["layers"] == 4
    assert int32_values(here.output) == int32_values(tmp_path / "x86-vnni.onnx")


def test_a_vnni_file_warns_only_where_it_saturates(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """In this process (this host's kernels): the x86-vnni file's runner, and `validate`'s report, carry
    the saturation warning exactly when this host saturates 8-bit weights, and bias correction ran on
    the host's kernels unless it does."""
    report = quantize_model(
        torch_models["pt2"], QuantizeOptions(calib=crops["calib"], cpu="x86-vnni", output=tmp_path / "v.onnx")
    )
    saturates = saturates_here(PRESETS["x86-vnni"])
    assert (report.settings["int8_arithmetic"] == EXACT_ARITHMETIC) == saturates
    with open_runner(read_artifact(report.output)) as runner:
        assert ("saturate" in runner.describe()) == saturates
    shown = validate_models(torch_models["pt2"], report.output, crops["val"]).candidate_runtime
    assert (shown is not None and "saturate" in shown) == saturates
