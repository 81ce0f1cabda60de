"""Activation ranges chosen by their effect on the model's output, for full-integer TFLite models.

The converter gives every int8 activation the min-max range of the calibration data, so one outlier
can coarsen the step of a whole tensor. For each activation (in execution order) this tries narrower
ranges (the scale times 0.9 ... 0.4, and less while narrower keeps helping; zero point kept) and
keeps one only where the *whole model's* output moves closer to the float model's on calibration
images (mean squared difference, as the drift ranking measures it), by more than a noise margin.
The search runs the model with its own runtime's kernels (XNNPACK on a CPU), so what it measures is
what the user runs.

Edits are in the flatbuffer, in place: the tensor's scale, and for each convolution or fully
connected layer that reads it, its int32 bias and bias scales (TFLite adds the bias at the scale
input x weight, and checks that the bias scale says so). Tensors tied by ops whose input and output
must share one scale (reshape, pad, pooling, concatenation, ...) move together; ops with a fixed
output scale (softmax, logistic, tanh) are left alone. The graph is unchanged, so speed is unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from edgekit.quantize.tflite_bias import collect_outputs, flatbuffer_graph, output_error, own_bias_buffers

FACTORS = (0.9, 0.8, 0.7, 0.55, 0.4)  # scale multipliers tried per activation, widest first; when the
SMALLEST = 1 / 64  # narrowest is best, halving goes on (an outlier can inflate a range many times) to this
MARGIN = 0.02  # a narrower range is kept only if it removes more than this share of the output error
SAMPLES = 100  # calibration images the search is judged on; 32 picked ranges that did not hold on unseen crops

# Ops whose int8 kernels read their input scales and requantize to any output scale.
FREE_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MEAN", "HARD_SWISH", "QUANTIZE"}
)
# Ops that may read a tensor of any scale but whose output scale is fixed or float.
READERS = frozenset({"DEQUANTIZE", "SOFTMAX", "LOGISTIC", "TANH"})
# Ops whose int8 input and output must have the same scale and zero point (TFLite's quantization spec).
SAME_SCALE_OPS = frozenset(
    {
        "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "PAD", "PADV2", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION",
        "TRANSPOSE", "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "GATHER", "PACK", "UNPACK",
        "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
    }
)  # fmt: skip
BIASED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


@dataclasses.dataclass
class RangeSelection:
    """What the search did: activations tried and narrowed, images, time, and the output error
    (mean squared difference from float) before and after."""

    tried: int
    narrowed: int
    samples: int
    seconds: float
    error_before: float
    error_after: float


class _Group:
    """Activations that share one scale, and the int32 biases (with their scales) of the layers
    that read them: views into the flatbuffer, and the values the converter gave them."""

    def __init__(self, key: str, scales: list[np.ndarray], biases: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.key = key  # an activation's name: what a later budget round finds the group by
        self.scales, self.biases = scales, biases
        self._original = [s.copy() for s in scales], [(b.copy(), bs.copy()) for b, bs in biases]
        self.factor = 1.0

    def set(self, factor: float) -> None:
        """Make the activations' scale `factor` times the converter's, with the readers' biases
        requantized to match (the real bias, int32 x scale, is unchanged)."""
        self.factor = factor
        for scale, original in zip(self.scales, self._original[0]):
            scale[:] = (original.astype(np.float64) * factor).astype(np.float32)
        for (bias, bias_scale), (original, original_scale) in zip(self.biases, self._original[1]):
            bias[:] = np.clip(np.round(original.astype(np.float64) / factor), -(2**31), 2**31 - 1).astype(np.int32)
            bias_scale[:] = (original_scale.astype(np.float64) * factor).astype(np.float32)


def select_ranges(
    float_model: bytes,
    quant_model: bytes,
    samples: list[np.ndarray],
    progress: Callable[[str], None],
    threads: int | None = None,
    chosen: dict[str, float] | None = None,
) -> tuple[bytes, RangeSelection]:
    """`quant_model` with activation ranges narrowed where that brings its output closer to
    `float_model`'s on `samples` (float inputs), and what was done. A non-empty `chosen` (activation
    name -> factor, from an earlier call) is applied without searching again; an empty one is filled."""
    started = time.perf_counter()
    data = own_bias_buffers(quant_model, rewrite=True)
    groups = _groups(data)
    if not groups or not samples:
        return quant_model, RangeSelection(0, 0, len(samples), time.perf_counter() - started, 0.0, 0.0)
    reference = collect_outputs(float_model, samples, threads)
    before = output_error(bytes(data), samples, reference, threads)
    if chosen:
        for group in groups:
            group.set(chosen.get(group.key, 1.0))
        after = output_error(bytes(data), samples, reference, threads)
    else:
        after = _search(data, groups, samples, reference, threads, progress)
        if chosen is not None:
            chosen.update({g.key: g.factor for g in groups if g.factor != 1.0})
    narrowed = sum(group.factor != 1.0 for group in groups)
    return bytes(data), RangeSelection(
        len(groups), narrowed, len(samples), time.perf_counter() - started, before, after
    )


def _search(
    data: bytearray,
    groups: list[_Group],
    samples: list[np.ndarray],
    reference: list[np.ndarray],
    threads: int | None,
    progress: Callable[[str], None],
) -> float:
    """Greedy, in execution order: each group takes the factor with the least output error on half of
    the images if that beats the current error there by MARGIN *and* lowers it on the other half (a
    choice that only fits the images it was picked on is noise: one judged on all 100 halved their
    error but moved unseen crops 13%); returns the final error on all images."""
    picked, checked = samples[0::2], samples[1::2]
    reference_picked, reference_checked = reference[0::2], reference[1::2]
    current = output_error(bytes(data), picked, reference_picked, threads)
    current_checked = output_error(bytes(data), checked, reference_checked, threads)
    for index, group in enumerate(groups):
        progress(f"activation ranges: {index + 1} of {len(groups)}")
        best_factor, best = 1.0, current
        factors = list(FACTORS)
        for factor in factors:
            group.set(factor)
            error = output_error(bytes(data), picked, reference_picked, threads)
            if error < best:
                best_factor, best = factor, error
                if factor == factors[-1] and factor / 2 >= SMALLEST:
                    factors.append(factor / 2)
        group.set(best_factor)
        confirmed = best < current * (1 - MARGIN) and (
            (error_checked := output_error(bytes(data), checked, reference_checked, threads))
            < current_checked * (1 - MARGIN)
        )
        if confirmed:
            current, current_checked = best, error_checked
        else:
            group.set(1.0)
    return output_error(bytes(data), samples, reference, threads)


def _groups(data: bytearray) -> list[_Group]:
    """The int8 activations whose scale can move, grouped by the ops that tie scales, in execution order."""
    from tensorflow.lite.python import schema_py_generated as schema

    model, graph, _ = flatbuffer_graph(data)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append((kind, [int(t) for t in op.InputsAsNumpy()], [int(t) for t in op.OutputsAsNumpy()]))
    activation = _activations(model, graph)
    parent = {t: t for t in activation}

    def root(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for kind, inputs, outputs in ops:
        if kind in SAME_SCALE_OPS:
            tied = [t for t in inputs + outputs if t in activation]
            for t in tied[1:]:
                parent[root(t)] = root(tied[0])
    return _movable(ops, activation, root, model, graph)


def _activations(model: object, graph: object) -> dict[int, np.ndarray]:
    """int8 tensors without constant data and with one scale of their own: tensor -> its scale view."""
    from tensorflow.lite.python import schema_py_generated as schema

    found, seen = {}, set()
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() else None
        quantization = tensor.Quantization()
        if tensor.Type() != schema.TensorType.INT8 or (buffer is not None and buffer.DataLength()):
            continue
        if quantization is None or quantization.ScaleLength() != 1:
            continue
        scale = quantization.ScaleAsNumpy()
        address = scale.ctypes.data
        if address in seen:  # a scale vector stored once for several tensors cannot move for one
            found = {t: s for t, s in found.items() if s.ctypes.data != address}
            continue
        seen.add(address)
        found[i] = scale
    return found


def _movable(
    ops: list[tuple[str, list[int], list[int]]], activation: dict, root: Callable, model: object, graph: object
) -> list[_Group]:
    """The groups in which every producer requantizes freely, every reader accepts any scale, and
    every reading layer has a bias of its own to requantize."""
    members: dict[int, list[int]] = {}
    for t in activation:
        members.setdefault(root(t), []).append(t)
    blocked = {root(t) for t in activation if t in set(int(i) for i in graph.InputsAsNumpy())}
    biases: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    order: dict[int, int] = {}
    for position, (kind, inputs, outputs) in enumerate(ops):
        for t in outputs:
            if t in activation:
                order.setdefault(root(t), position)
                if kind not in FREE_OPS | SAME_SCALE_OPS:
                    blocked.add(root(t))
        for slot, t in enumerate(inputs):
            if t not in activation:
                continue
            if kind not in FREE_OPS | READERS | SAME_SCALE_OPS or (kind in BIASED_OPS and slot != 0):
                blocked.add(root(t))
            elif kind in BIASED_OPS and len(inputs) > 2 and inputs[2] >= 0:
                bias = _bias_views(model, graph, inputs[2])
                if bias is None:
                    blocked.add(root(t))
                else:
                    biases.setdefault(root(t), []).append(bias)
    movable = [g for g in members if g not in blocked and g in order]
    return [
        _Group(
            min(graph.Tensors(t).Name().decode() for t in members[g]),
            [activation[t] for t in members[g]],
            biases.get(g, []),
        )
        for g in sorted(movable, key=order.__getitem__)
    ]


def _bias_views(model: object, graph: object, index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Writable views of a layer's int32 bias values and bias scales; None if they cannot be edited
    (not int32 with scales, or data outside the flatbuffer)."""
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = graph.Tensors(index)
    quantization = tensor.Quantization()
    if tensor.Type() != schema.TensorType.INT32 or quantization is None or not quantization.ScaleLength():
        return None
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if not isinstance(raw, np.ndarray) or raw.size != 4 * max(int(np.prod(tensor.ShapeAsNumpy())), 1):
        return None
    return raw.view(np.int32), quantization.ScaleAsNumpy()
