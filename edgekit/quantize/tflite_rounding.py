"""Error-compensating weight rounding (GPTQ) for full-integer TFLite models: the method of
edgekit.quantize.onnx_rounding applied to the int8 weights of CONV_2D, DEPTHWISE_CONV_2D (depth
multiplier 1) and FULLY_CONNECTED, rewritten in the flatbuffer in place (same size and layout).

The float model must come from the same converter run as the int8 one (tensor names match); each
layer's float input is read from it with every tensor kept, like the bias correction. A layer whose
int8 weights are not the nearest rounding of the float model's weights at the stored scales (a
mismatch between the two models) is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.quantize.onnx_rounding import MAX_COLUMNS, Autocorrelation, Rounding, gptq_round
from edgekit.quantize.tflite_bias import collect_tensors, flatbuffer_graph, reference_interpreter

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class _Layer:
    """One int8 layer: its float input tensor, float weights as rows x columns, per-row scales, a
    writable int8 view of its weights in the flatbuffer, and how its kernel walks the input."""

    float_input: int
    key: str  # float model's output name and the scales: what a rounding can be reused by
    float_weight: np.ndarray
    scale: np.ndarray
    view: np.ndarray
    shape: tuple[int, ...]
    op: str
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    same_padding: bool = True


def round_tflite_weights(
    float_model: bytes,
    quant_model: bytes,
    samples: list[np.ndarray],
    progress: Callable[[str], None],
    cache: dict[str, np.ndarray] | None = None,
) -> tuple[bytes, Rounding]:
    """`quant_model` with GPTQ-rounded int8 weights, and what was done; `samples` are float inputs.
    `cache` keeps each layer's rounding for later budget rounds (it depends on nothing else)."""
    started = time.perf_counter()
    data = bytearray(quant_model)
    reference = reference_interpreter(float_model)
    layers = _layers(reference_interpreter(bytes(data)), reference, data)
    if not layers or not samples:
        return quant_model, Rounding(0, 0.0, len(samples), time.perf_counter() - started)
    cache = {} if cache is None else cache
    todo = [layer for layer in layers if layer.key not in cache]
    if todo:
        progress(f"weight rounding: input statistics of {len(todo)} layers on {len(samples)} images")
        for index, (layer, hessian) in enumerate(zip(todo, _hessians(reference, todo, samples))):
            progress(f"weight rounding: layer {index + 1} of {len(todo)}")
            nearest = np.clip(np.round(layer.float_weight / layer.scale[:, None]), -127, 127)
            cache[layer.key] = (
                nearest if hessian is None else np.clip(gptq_round(layer.float_weight, layer.scale, hessian), -127, 127)
            )
    moved = total = 0
    for layer in layers:
        nearest = np.clip(np.round(layer.float_weight / layer.scale[:, None]), -127, 127)
        rounded = cache[layer.key]
        moved, total = moved + int((rounded != nearest).sum()), total + rounded.size
        layer.view[:] = _stored(rounded, layer).ravel().astype(np.int8)
    seconds = time.perf_counter() - started
    return bytes(data), Rounding(len(layers), moved / max(total, 1), len(samples), seconds)


def _stored(rows: np.ndarray, layer: _Layer) -> np.ndarray:
    """Rows x columns back in the layer's weight layout (OHWI, 1HWC or OI)."""
    if layer.op == "DEPTHWISE_CONV_2D":
        return rows.T.reshape(layer.shape)
    return rows.reshape(layer.shape)


def _layers(quant, reference, data: bytearray) -> list[_Layer]:
    """The int8 weighted layers with weights of their own, matched to the float model by output name."""
    model, graph, users = flatbuffer_graph(data)
    options = _options(data)
    tensors = {t["index"]: t for t in quant.get_tensor_details()}
    float_names = {t["index"]: t["name"] for t in reference.get_tensor_details()}
    float_ops = {float_names.get(int(op["outputs"][0])): op for op in reference._get_ops_details()}
    layers = []
    for op in quant._get_ops_details():
        inputs = [int(i) for i in op["inputs"]]
        twin = float_ops.get(tensors[int(op["outputs"][0])]["name"]) if op["op_name"] in WEIGHTED_OPS else None
        if twin is None or twin["op_name"] != op["op_name"]:
            continue
        weight = tensors[inputs[1]]
        buffer = graph.Tensors(inputs[1]).Buffer()
        raw = model.Buffers(buffer).DataAsNumpy()
        if weight["dtype"] != np.int8 or users[buffer] != 1 or not isinstance(raw, np.ndarray):
            continue
        layer = _layer(op, twin, weight, raw.view(np.int8), reference, options.get(op["index"]))
        if layer is not None:
            layers.append(layer)
    return layers


def _layer(op: dict, twin: dict, weight: dict, view: np.ndarray, reference, option) -> _Layer | None:
    """The rounding problem of one layer, or None when it is not one this module handles."""
    shape = tuple(int(d) for d in weight["shape"])
    float_weight = reference.get_tensor(int(twin["inputs"][1])).astype(np.float64)
    if float_weight.shape != shape or view.size != int(np.prod(shape)):
        return None
    params = weight["quantization_parameters"]
    scale = np.asarray(params["scales"], np.float64)
    if op["op_name"] == "DEPTHWISE_CONV_2D":
        if option is None or option.depthMultiplier != 1:
            return None
        rows = float_weight.reshape(-1, shape[-1]).T  # (kh*kw, C) -> C x (kh*kw)
    else:
        rows = float_weight.reshape(shape[0], -1)
    scale = np.broadcast_to(scale, (rows.shape[0],)).copy() if scale.size in (1, rows.shape[0]) else None
    if scale is None or np.any(scale <= 0) or rows.shape[1] > MAX_COLUMNS:
        return None
    current = _stored_rows(view.reshape(shape), op["op_name"])
    if np.abs(current - rows / scale[:, None]).max() > 1.01:  # not this float model's weights
        return None
    key = f"{twin['outputs'][0]}:{scale.tobytes().hex()}"
    layer = _Layer(int(twin["inputs"][0]), key, rows, scale, view, shape, op["op_name"])
    if option is not None and op["op_name"] != "FULLY_CONNECTED":
        layer.stride = (option.strideH, option.strideW)
        layer.dilation = (option.dilationHFactor, option.dilationWFactor)
        layer.same_padding = option.padding == 0
    return layer


def _stored_rows(weight: np.ndarray, op: str) -> np.ndarray:
    """The stored int8 weights as rows x columns."""
    if op == "DEPTHWISE_CONV_2D":
        return weight.reshape(-1, weight.shape[-1]).T.astype(np.float64)
    return weight.reshape(weight.shape[0], -1).astype(np.float64)


def _options(data: bytearray) -> dict[int, object]:
    """Each operator's builtin options (strides, padding, dilation), by operator index."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = schema.ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
    return {index: op.builtinOptions for index, op in enumerate(graph.operators)}


def _hessians(reference, layers: list[_Layer], samples: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per layer, H from its float inputs on every sample (one sample's tensors in memory at a time);
    None for a layer whose input this module does not unfold (it keeps nearest rounding)."""
    statistics: list[Autocorrelation | None] = [Autocorrelation() for _ in layers]
    inputs = [layer.float_input for layer in layers]
    for sample in samples:
        values = collect_tensors(reference, inputs, [sample], np.float32)[0]
        for index, (layer, x) in enumerate(zip(layers, values)):
            statistic = statistics[index]
            if statistic is None:
                continue
            try:
                statistic.add(_patches(x.astype(np.float64), layer))
            except ValueError:  # a grouped conv, a 3-D FC input of another width, ...
                statistics[index] = None
    return [
        statistic.mean() if statistic is not None and statistic.well_determined() else None for statistic in statistics
    ]


def _patches(x: np.ndarray, layer: _Layer) -> np.ndarray:
    """What each output position sees, in the weight's column order: positions x (kh, kw, c), or
    channels x positions x (kh*kw) for a depthwise conv."""
    if layer.op == "FULLY_CONNECTED":
        return x.reshape(-1, layer.float_weight.shape[1])
    kh, kw = layer.shape[1], layer.shape[2]
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    n, height, width, c = x.shape
    if layer.same_padding:
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h = max((out_h - 1) * sh + span_h - height, 0)
        pad_w = max((out_w - 1) * sw + span_w - width, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    windows = windows[:, ::sh, ::sw, :, ::dh, ::dw]  # n, oh, ow, c, kh, kw
    _, oh, ow, _, _, _ = windows.shape
    columns = layer.float_weight.shape[1]
    if (layer.op == "DEPTHWISE_CONV_2D" and (c != layer.float_weight.shape[0] or kh * kw != columns)) or (
        layer.op == "CONV_2D" and kh * kw * c != columns
    ):
        raise ValueError("the input does not match the weight (grouped convolution?)")
    if layer.op == "DEPTHWISE_CONV_2D":
        return windows.transpose(3, 0, 1, 2, 4, 5).reshape(c, n * oh * ow, kh * kw)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)
