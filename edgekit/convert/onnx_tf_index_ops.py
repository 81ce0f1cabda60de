"""ONNX operators that resize, upsample and index, as TensorFlow ops in NHWC (registered in OPS):
Resize/Upsample (UNet decoders), ConvTranspose, Slice and Gather (ViT's class token, q/k/v)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from edgekit.convert.onnx_tf_ops import NCHW_AXIS_IN_NHWC, Attrs, Value, const, nchw, nhwc, op
from edgekit.errors import UnsupportedRoute

if TYPE_CHECKING:
    from onnx import NodeProto


def _text(attrs: Attrs, key: str, default: str) -> str:
    value = attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


# (mode, coordinate_transformation_mode, nearest_mode) -> TFLite's (align_corners, half_pixel_centers).
# torch's Upsample/interpolate: nearest exports asymmetric+floor; bilinear half_pixel (pytorch_half_pixel
# differs only for an output size of 1) or align_corners.
_RESIZE_MODES = {
    ("nearest", "asymmetric", "floor"): (False, False),
    ("nearest", "align_corners", "round_prefer_ceil"): (True, False),
    ("nearest", "half_pixel", "round_prefer_ceil"): (False, True),
    ("nearest", "tf_half_pixel_for_nn", "round_prefer_ceil"): (False, True),
    ("linear", "half_pixel", ""): (False, True),
    ("linear", "pytorch_half_pixel", ""): (False, True),
    ("linear", "align_corners", ""): (True, False),
    ("linear", "asymmetric", ""): (False, False),
}


@op("Resize", "Upsample")
def resize(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Spatial resize of a 4-D tensor: nearest or bilinear, in the coordinate modes TFLite has."""
    x = inputs[0]
    if x.rank != 4:
        raise UnsupportedRoute(f"ONNX {node.op_type} {node.name} resizes a {x.rank}-D tensor", fix="resize 4-D images")
    mode = _text(attrs, "mode", "nearest")
    coords = _text(attrs, "coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric")
    nearest = _text(attrs, "nearest_mode", "round_prefer_floor" if node.op_type == "Resize" else "floor")
    flags = _RESIZE_MODES.get((mode, coords, nearest if mode == "nearest" else ""))
    if flags is None:
        raise UnsupportedRoute(
            f"ONNX {node.op_type} {node.name} uses mode={mode}, coordinate_transformation_mode={coords}"
            + (f", nearest_mode={nearest}" if mode == "nearest" else ""),
            fix="export nearest (asymmetric, floor) or bilinear (half_pixel or align_corners) resizing",
        )
    data = nhwc(tf, x)
    height, width = int(data.shape[1]), int(data.shape[2])
    size = _resize_size(node, inputs, attrs, height, width)
    resize_fn = tf.raw_ops.ResizeNearestNeighbor if mode == "nearest" else tf.raw_ops.ResizeBilinear
    y = resize_fn(images=data, size=size, align_corners=flags[0], half_pixel_centers=flags[1])
    return [Value(y, nhwc=True)]


def _resize_size(node: NodeProto, inputs: list[Value | None], attrs: Attrs, height: int, width: int) -> list[int]:
    """The output (H, W) from Resize's constant sizes or scales (Upsample: its scales input/attribute)."""
    sizes = inputs[3] if len(inputs) > 3 else None
    if sizes is not None and sizes.data.size:
        return [int(v) for v in const(node, sizes, "sizes")[2:]]
    scales_value = (
        inputs[2] if node.op_type == "Resize" and len(inputs) > 2 else (inputs[1] if len(inputs) > 1 else None)
    )
    scales = const(node, scales_value, "scales") if scales_value is not None else np.array(attrs.get("scales", []))
    if scales.size != 4 or scales[0] != 1 or scales[1] != 1:
        raise UnsupportedRoute(f"ONNX {node.op_type} {node.name} scales {scales.tolist()}", fix="resize only H and W")
    return [int(np.floor(height * scales[2])), int(np.floor(width * scales[3]))]


@op("ConvTranspose")
def conv_transpose(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """2-D transposed convolution (one group, no dilation) as TFLite's TRANSPOSE_CONV, then ONNX's pads."""
    weight = const(node, inputs[1], "weight")  # [C_in, C_out, kH, kW]
    if weight.ndim != 4 or int(attrs.get("group", 1)) != 1 or list(attrs.get("dilations", [1, 1])) != [1, 1]:
        raise UnsupportedRoute(
            f"ONNX ConvTranspose {node.name} is grouped, dilated or not 2-D",
            fix="use a 2-D ConvTranspose with groups=1 and dilation 1",
        )
    if _text(attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in attrs:
        raise UnsupportedRoute(f"ONNX ConvTranspose {node.name} uses auto_pad/output_shape", fix="export explicit pads")
    x = nhwc(tf, inputs[0])
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    extra = [int(p) for p in attrs.get("output_padding", [0, 0])]
    kernel = weight.shape[2:]
    full = [(int(x.shape[1 + i]) - 1) * strides[i] + int(kernel[i]) + extra[i] for i in range(2)]
    output_shape = [int(x.shape[0]), full[0], full[1], int(weight.shape[1])]
    y = tf.nn.conv2d_transpose(x, np.transpose(weight, (2, 3, 1, 0)), output_shape, [1, *strides, 1], "VALID")
    y = y[:, pads[0] : full[0] - pads[2], pads[1] : full[1] - pads[3], :]
    if len(inputs) > 2 and inputs[2] is not None:
        y = tf.nn.bias_add(y, const(node, inputs[2], "bias"))
    return [Value(y, nhwc=True)]


def _bound(value: np.integer) -> int | None:
    """A Slice start/end as a Python slice bound: ONNX's INT64_MAX/MIN ("to the end") as None."""
    return None if abs(int(value)) >= np.iinfo(np.int32).max else int(value)


@op("Slice")
def slice_(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Slice with constant starts/ends/axes/steps; an NHWC-held tensor is sliced on the mapped axes."""
    x = inputs[0]
    starts, ends = const(node, inputs[1], "starts"), const(node, inputs[2], "ends")
    axes = const(node, inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = const(node, inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts))
    index = [slice(None)] * x.rank
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % x.rank
        index[NCHW_AXIS_IN_NHWC[axis] if x.nhwc else axis] = slice(_bound(start), _bound(end), int(step))
    return [Value(x.data[tuple(index)], nhwc=x.nhwc)]


@op("Gather")
def gather(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Gather with constant indices (a class token, a channel subset); NHWC kept when the rank is."""
    x, indices = inputs[0], const(node, inputs[1], "indices").astype(np.int64)
    axis = int(attrs.get("axis", 0)) % x.rank
    if x.const:
        return [Value(np.take(x.data, indices, axis=axis))]
    if x.nhwc and indices.ndim == 1:
        return [Value(tf.gather(x.data, indices, axis=NCHW_AXIS_IN_NHWC[axis]), nhwc=True)]
    return [Value(tf.gather(nchw(tf, x), indices, axis=axis))]
