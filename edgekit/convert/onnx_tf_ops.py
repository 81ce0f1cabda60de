"""ONNX operators as TensorFlow ops, keeping 4-D activations in NHWC.

Each handler takes the node, its inputs as `Value`s and returns its outputs. A 4-D tensor flagged
`nhwc` holds ONNX's NCHW tensor transposed to NHWC, so TFLite gets native NHWC convolutions
and no transposes around them. Constants stay numpy arrays so that shape arithmetic folds.
The operator set covers CNN classifiers (resizing and indexing ops: onnx_tf_index_ops); anything
else raises UnsupportedRoute naming the node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Union

import numpy as np

from edgekit.errors import UnsupportedRoute

if TYPE_CHECKING:
    import tensorflow
    from onnx import NodeProto

# An ONNX attribute as onnx.helper.get_attribute_value gives it (tensors as numpy arrays).
AttrValue = int | float | str | bytes | list[int] | list[float] | list[str] | np.ndarray
Attrs = dict[str, AttrValue]
Data = Union["tensorflow.Tensor", np.ndarray]  # a TF tensor, or a numpy constant

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
NCHW_AXIS_IN_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}


@dataclasses.dataclass
class Value:
    """A tensor (tf.Tensor) or constant (np.ndarray); `nhwc` marks a 4-D tensor stored as NHWC."""

    data: Data
    nhwc: bool = False

    @property
    def const(self) -> bool:
        """True for a numpy constant."""
        return isinstance(self.data, np.ndarray)

    @property
    def rank(self) -> int:
        """The tensor's rank."""
        return len(self.data.shape)


Handler = Callable[["NodeProto", list[Value | None], Attrs, ModuleType], list[Value]]
OPS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for ONNX op types."""

    def register(fn: Handler) -> Handler:
        for name in names:
            OPS[name] = fn
        return fn

    return register


def nchw(tf: ModuleType, value: Value) -> Data:
    """The data in ONNX's own layout."""
    return tf.transpose(value.data, TO_NCHW) if value.nhwc else value.data


def nhwc(tf: ModuleType, value: Value) -> Data:
    """4-D data as NHWC (constants are transposed in numpy)."""
    if value.nhwc:
        return value.data
    if value.const:
        return np.transpose(value.data, TO_NHWC)
    return tf.transpose(value.data, TO_NHWC)


def const(node: NodeProto, value: Value | None, what: str) -> np.ndarray:
    """A constant input, or UnsupportedRoute if it is computed at run time."""
    if value is None or not value.const:
        raise UnsupportedRoute(
            f"ONNX node {node.name or node.op_type} ({node.op_type}) has a non-constant {what}",
            fix="export with constant weights/shapes (fixed input shape)",
        )
    return value.data


def _same_or_explicit(
    in_hw: list[int], kernel: list[int], strides: list[int], dilations: list[int], pads: list[int]
) -> str | None:
    """'SAME' when ONNX's pads equal what TensorFlow's SAME would add, else None."""
    for axis in range(2):
        effective = (kernel[axis] - 1) * dilations[axis] + 1
        out = -(-in_hw[axis] // strides[axis])
        total = max((out - 1) * strides[axis] + effective - in_hw[axis], 0)
        if (pads[axis], pads[axis + 2]) != (total // 2, total - total // 2):
            return None
    return "SAME"


def _spatial_padding(
    tf: ModuleType,
    x: tensorflow.Tensor,
    node: NodeProto,
    attrs: Attrs,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    pad_value: float = 0.0,
    allow_same: bool = True,
) -> tuple[tensorflow.Tensor, str]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        if attrs["auto_pad"] in (b"SAME_UPPER", "SAME_UPPER"):
            return x, "SAME"
        raise UnsupportedRoute(
            f"ONNX node {node.name} uses auto_pad={attrs['auto_pad']!r}", fix="export with explicit pads"
        )
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if not any(pads):
        return x, "VALID"
    in_hw = [int(x.shape[1]), int(x.shape[2])]
    if allow_same and _same_or_explicit(in_hw, kernel, strides, dilations, pads):
        return x, "SAME"
    padded = tf.pad(x, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], constant_values=pad_value)
    return padded, "VALID"


@op("Conv")
def conv(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """2-D convolution, depthwise and grouped convolution, in NHWC."""
    weight = const(node, inputs[1], "weight")
    if weight.ndim != 4:
        raise UnsupportedRoute(
            f"ONNX Conv {node.name} is {weight.ndim - 2}-D", fix="only 2-D convolutions convert to TFLite"
        )
    x = nhwc(tf, inputs[0])
    groups = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    kernel = list(weight.shape[2:])
    x, padding = _spatial_padding(tf, x, node, attrs, kernel, strides, dilations)
    in_channels = int(x.shape[3])
    if groups == 1:
        y = tf.nn.conv2d(x, np.transpose(weight, (2, 3, 1, 0)), [1, *strides, 1], padding, dilations=dilations)
    elif groups == in_channels and weight.shape[1] == 1 and strides[0] == strides[1]:
        multiplier = weight.shape[0] // in_channels
        kernel_hwcm = np.transpose(weight.reshape(in_channels, multiplier, *kernel), (2, 3, 0, 1))
        y = tf.nn.depthwise_conv2d(x, kernel_hwcm, [1, *strides, 1], padding, dilations=dilations)
    else:
        parts = tf.split(x, groups, axis=3)
        kernels = np.split(np.transpose(weight, (2, 3, 1, 0)), groups, axis=3)
        y = tf.concat(
            [tf.nn.conv2d(p, k, [1, *strides, 1], padding, dilations=dilations) for p, k in zip(parts, kernels)], axis=3
        )
    if len(inputs) > 2 and inputs[2] is not None:
        y = tf.nn.bias_add(y, const(node, inputs[2], "bias"))
    return [Value(y, nhwc=True)]


@op("BatchNormalization")
def batch_norm(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Inference batch norm as a per-channel scale and shift."""
    gamma, beta, mean, var = (const(node, v, "statistic") for v in inputs[1:5])
    scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
    shift = beta - mean * scale
    x = inputs[0]
    if x.rank == 4:
        return [Value(nhwc(tf, x) * scale.astype(np.float32) + shift.astype(np.float32), nhwc=True)]
    shape = [1, -1] + [1] * (x.rank - 2)
    return [Value(x.data * scale.reshape(shape).astype(np.float32) + shift.reshape(shape).astype(np.float32))]


def _unary(fn: Callable[[ModuleType, tensorflow.Tensor, Attrs], tensorflow.Tensor]) -> Handler:
    def handler(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
        x = inputs[0]
        return [Value(fn(tf, x.data, attrs), nhwc=x.nhwc)]

    return handler


OPS["Relu"] = _unary(lambda tf, x, a: tf.nn.relu(x))
OPS["Sigmoid"] = _unary(lambda tf, x, a: tf.sigmoid(x))
OPS["Tanh"] = _unary(lambda tf, x, a: tf.tanh(x))
OPS["LeakyRelu"] = _unary(lambda tf, x, a: tf.nn.leaky_relu(x, alpha=a.get("alpha", 0.01)))
OPS["Elu"] = _unary(lambda tf, x, a: tf.nn.elu(x))
OPS["HardSigmoid"] = _unary(lambda tf, x, a: tf.clip_by_value(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0))
OPS["HardSwish"] = _unary(lambda tf, x, a: x * tf.nn.relu6(x + 3.0) / 6.0)
OPS["Identity"] = OPS["Dropout"] = _unary(lambda tf, x, a: x)
OPS["Sqrt"] = _unary(lambda tf, x, a: tf.sqrt(x))
OPS["Exp"] = _unary(lambda tf, x, a: tf.exp(x))
OPS["Neg"] = _unary(lambda tf, x, a: tf.negative(x))
OPS["Abs"] = _unary(lambda tf, x, a: tf.abs(x))
OPS["Reciprocal"] = _unary(lambda tf, x, a: tf.math.reciprocal(x))


# Abramowitz and Stegun 7.1.26: erf to 1.5e-7 from TFLite builtins (ABS, EXP, MUL, ADD, DIV, SELECT);
# TFLite has no ERF, and torch's exact GELU exports as x * 0.5 * (1 + erf(x / sqrt 2)).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(tf: ModuleType, x: tensorflow.Tensor, attrs: Attrs) -> tensorflow.Tensor:
    magnitude = tf.abs(x)
    t = 1.0 / (1.0 + _ERF_P * magnitude)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    value = 1.0 - poly * tf.exp(-magnitude * magnitude)
    return tf.where(x < 0, -value, value)


OPS["Erf"] = _unary(_erf)


@op("LayerNormalization")
def layer_norm(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Normalise over the axes from `axis` to the last (ONNX layout), then scale and shift."""
    x = inputs[0]
    data = nchw(tf, x)
    axes = list(range(int(attrs.get("axis", -1)) % x.rank, x.rank))
    mean = tf.reduce_mean(data, axis=axes, keepdims=True)
    centred = data - mean
    variance = tf.reduce_mean(centred * centred, axis=axes, keepdims=True)
    y = centred / tf.sqrt(variance + float(attrs.get("epsilon", 1e-5)))
    y = y * const(node, inputs[1], "scale").astype(np.float32)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + const(node, inputs[2], "bias").astype(np.float32)
    return [Value(y)]


@op("Split")
def split(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Split along one axis (sizes from the input, the attribute, or equal parts); an NHWC-held tensor
    splits on the mapped axis and its parts stay NHWC (ShuffleNet's channel split)."""
    x = inputs[0]
    axis = int(attrs.get("axis", 0)) % x.rank
    if len(inputs) > 1 and inputs[1] is not None:
        sizes = [int(v) for v in const(node, inputs[1], "split")]
    elif "split" in attrs:
        sizes = [int(v) for v in attrs["split"]]
    else:
        parts = len(node.output)
        length = int(x.data.shape[NCHW_AXIS_IN_NHWC[axis]] if x.nhwc else x.data.shape[axis])
        sizes = [-(-length // parts)] * (parts - 1)
        sizes.append(length - sum(sizes))
    if x.nhwc and x.rank == 4:
        return [Value(part, nhwc=True) for part in tf.split(x.data, sizes, axis=NCHW_AXIS_IN_NHWC[axis])]
    if x.const:
        return [Value(part) for part in np.split(x.data, np.cumsum(sizes)[:-1], axis=axis)]
    return [Value(part) for part in tf.split(x.data, sizes, axis=axis)]


@op("Clip")
def clip(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Clip; (0, 6) becomes ReLU6, which TFLite fuses into the convolution."""
    low = float(const(node, inputs[1], "min")) if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    high = float(const(node, inputs[2], "max")) if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    x = inputs[0]
    if low == 0.0 and high == 6.0:
        y = tf.nn.relu6(x.data)
    elif low == 0.0 and high is None:
        y = tf.nn.relu(x.data)
    else:
        y = tf.clip_by_value(x.data, -np.inf if low is None else low, np.inf if high is None else high)
    return [Value(y, nhwc=x.nhwc)]


_BINARY = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Max": np.maximum,
    "Min": np.minimum,
    "Pow": np.power,
}


@op(*_BINARY)
def binary(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Element-wise arithmetic with ONNX broadcasting, aligned to NHWC when either side is."""
    a, b = inputs[0], inputs[1]
    if a.const and b.const:
        return [Value(_BINARY[node.op_type](a.data, b.data))]
    tf_fn = {
        "Add": tf.add,
        "Sub": tf.subtract,
        "Mul": tf.multiply,
        "Div": tf.divide,
        "Max": tf.maximum,
        "Min": tf.minimum,
        "Pow": tf.pow,
    }[node.op_type]
    if a.nhwc or b.nhwc:
        return [Value(tf_fn(_as_nhwc_operand(tf, a), _as_nhwc_operand(tf, b)), nhwc=True)]
    return [Value(tf_fn(a.data, b.data))]


def _as_nhwc_operand(tf: ModuleType, value: Value) -> Data:
    if value.nhwc:
        return value.data
    if value.const:
        data = value.data.astype(np.float32) if value.data.dtype == np.float64 else value.data
        if data.size == 1:
            return data.reshape(())
        return np.transpose(data.reshape((1,) * (4 - data.ndim) + data.shape), TO_NHWC)
    if value.rank == 4:
        return tf.transpose(value.data, TO_NHWC)
    return tf.transpose(tf.reshape(value.data, [1] * (4 - value.rank) + value.data.shape.as_list()), TO_NHWC)


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Mean or max over the spatial axes, keeping dims."""
    reduce = tf.reduce_mean if node.op_type == "GlobalAveragePool" else tf.reduce_max
    return [Value(reduce(nhwc(tf, inputs[0]), axis=[1, 2], keepdims=True), nhwc=True)]


@op("ReduceMean", "ReduceMax", "ReduceSum")
def reduce(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Reductions; spatial means stay NHWC, anything else runs in ONNX layout."""
    x = inputs[0]
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = const(node, inputs[1], "axes").tolist()
    keep = bool(attrs.get("keepdims", 1))
    fn = {"ReduceMean": tf.reduce_mean, "ReduceMax": tf.reduce_max, "ReduceSum": tf.reduce_sum}[node.op_type]
    rank = x.rank
    axes = sorted(a % rank for a in (axes if axes is not None else range(rank)))
    if x.nhwc and (keep or axes == [2, 3]):
        return [Value(fn(x.data, axis=[NCHW_AXIS_IN_NHWC[a] for a in axes], keepdims=keep), nhwc=keep)]
    return [Value(fn(nchw(tf, x), axis=axes, keepdims=keep))]


@op("MaxPool", "AveragePool")
def pool(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """2-D max/average pooling in NHWC (ceil_mode as the extra end padding it amounts to)."""
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1, 1]))
    is_max = node.op_type == "MaxPool"
    x = nhwc(tf, inputs[0])
    if attrs.get("ceil_mode", 0):
        attrs = _ceil_mode_as_padding(node, attrs, [int(x.shape[1]), int(x.shape[2])], kernel, strides, is_max)
    count_pad = bool(attrs.get("count_include_pad", 0))
    pad_value = -np.inf if is_max else 0.0
    if not is_max and any(attrs.get("pads", [0])) and not count_pad:
        in_hw = [int(x.shape[1]), int(x.shape[2])]
        if not _same_or_explicit(in_hw, kernel, strides, [1, 1], list(attrs["pads"])):
            raise UnsupportedRoute(
                f"ONNX AveragePool {node.name} has padding TFLite cannot express", fix="pad explicitly"
            )
        padding = "SAME"
    else:
        # count_include_pad=1 averages over the zeros too, which TF's SAME would leave out of the count.
        x, padding = _spatial_padding(tf, x, node, attrs, kernel, strides, [1, 1], pad_value, allow_same=is_max)
    fn = tf.nn.max_pool2d if is_max else tf.nn.avg_pool2d
    return [Value(fn(x, kernel, strides, padding), nhwc=True)]


def _ceil_mode_as_padding(
    node: NodeProto, attrs: Attrs, in_hw: list[int], kernel: list[int], strides: list[int], is_max: bool
) -> Attrs:
    """ceil_mode=1 as floor-mode attributes: unchanged where ceil gives the same output size (SqueezeNet
    at 224), else (MaxPool only) extra padding at the end, which a max never picks. A window that would
    start in the end padding is dropped, as in ONNX and PyTorch."""
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    extra = []
    for axis, (size, k, s) in enumerate(zip(in_hw, kernel, strides)):
        padded = size + pads[axis] + pads[axis + 2]
        ceil_out = -(-(padded - k) // s) + 1
        if (ceil_out - 1) * s >= size + pads[axis]:
            ceil_out -= 1
        extra.append(max(0, (ceil_out - 1) * s + k - padded))
    if not any(extra):
        return {**attrs, "ceil_mode": 0}
    if not is_max:
        raise UnsupportedRoute(
            f"ONNX AveragePool {node.name} uses ceil_mode=1 where it changes the output size",
            fix="export with ceil_mode=False",
        )
    return {**attrs, "ceil_mode": 0, "pads": [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]}


def _spatial_is_one(value: Value) -> bool:
    return value.nhwc and value.data.shape[1] == 1 and value.data.shape[2] == 1


@op("Flatten")
def flatten(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Flatten to 2-D; NHWC with 1x1 spatial flattens without a transpose."""
    x = inputs[0]
    axis = int(attrs.get("axis", 1)) % max(x.rank, 1)
    data = x.data if _spatial_is_one(x) else nchw(tf, x)
    if x.const:
        return [Value(data.reshape(int(np.prod(data.shape[:axis])), -1))]
    lead = int(np.prod(data.shape[:axis]))
    return [Value(tf.reshape(data, [lead, -1]))]


@op("Reshape")
def reshape(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Reshape in ONNX layout (0 copies a dimension unless allowzero)."""
    x = inputs[0]
    shape = [int(d) for d in const(node, inputs[1], "shape")]
    source = x.data.shape if not _spatial_is_one(x) else [x.data.shape[0], x.data.shape[3], 1, 1]
    if not attrs.get("allowzero", 0):
        shape = [int(source[i]) if d == 0 else d for i, d in enumerate(shape)]
    if x.const:
        return [Value(x.data.reshape(shape))]
    data = x.data if _spatial_is_one(x) else nchw(tf, x)
    return [Value(tf.reshape(data, shape))]


@op("Squeeze", "Unsqueeze")
def squeeze(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Squeeze/Unsqueeze in ONNX layout."""
    x = inputs[0]
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = const(node, inputs[1], "axes").tolist()
    data = (
        x.data
        if (_spatial_is_one(x) and node.op_type == "Squeeze" and sorted(a % 4 for a in axes or []) == [2, 3])
        else nchw(tf, x)
    )
    if node.op_type == "Squeeze":
        if data is x.data and x.nhwc:
            return [Value(tf.reshape(data, [data.shape[0], data.shape[3]]))]
        axes_list = None if axes is None else [int(a) for a in axes]
        return [
            Value(
                np.squeeze(data, axis=tuple(axes_list) if axes_list else None)
                if x.const
                else tf.squeeze(data, axes_list)
            )
        ]
    out_rank = x.rank + len(axes)
    for axis in sorted(a % out_rank for a in axes):
        data = np.expand_dims(data, axis) if x.const else tf.expand_dims(data, axis)
    return [Value(data)]


@op("Gemm")
def gemm(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """alpha * A' B' + beta * C with a constant B (a fully connected layer)."""
    a = nchw(tf, inputs[0])
    b = const(node, inputs[1], "weight")
    if attrs.get("transA", 0):
        a = tf.transpose(a)
    if attrs.get("transB", 0):
        b = b.T
    y = tf.matmul(a, np.ascontiguousarray(b * attrs.get("alpha", 1.0)).astype(np.float32))
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + (const(node, inputs[2], "bias") * attrs.get("beta", 1.0)).astype(np.float32)
    return [Value(y)]


@op("MatMul")
def matmul(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Matrix product in ONNX layout."""
    a, b = inputs[0], inputs[1]
    return [Value(tf.matmul(nchw(tf, a), b.data if b.const else nchw(tf, b)))]


@op("Concat")
def concat(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Concatenate; all-NHWC inputs concatenate on the mapped axis."""
    values = [v for v in inputs if v is not None]
    axis = int(attrs["axis"])
    if all(v.const for v in values):
        return [Value(np.concatenate([v.data for v in values], axis=axis))]
    if all(v.rank == 4 for v in values) and any(v.nhwc for v in values):
        return [Value(tf.concat([nhwc(tf, v) for v in values], axis=NCHW_AXIS_IN_NHWC[axis % 4]), nhwc=True)]
    return [Value(tf.concat([nchw(tf, v) for v in values], axis=axis))]


@op("Softmax")
def softmax(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Softmax over one axis (opset 13+ semantics)."""
    x = inputs[0]
    axis = int(attrs.get("axis", -1)) % x.rank
    if x.nhwc:
        return [Value(tf.nn.softmax(x.data, axis=NCHW_AXIS_IN_NHWC[axis]), nhwc=True)]
    return [Value(tf.nn.softmax(x.data, axis=axis))]


@op("Transpose")
def transpose(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Transpose; a transpose to NHWC of an NHWC-held tensor costs nothing."""
    x = inputs[0]
    perm = list(attrs.get("perm", range(x.rank)[::-1]))
    if x.nhwc and tuple(perm) == TO_NHWC:
        return [Value(x.data)]
    if not x.nhwc and not x.const and x.rank == 4 and tuple(perm) == TO_NCHW:
        return [Value(x.data, nhwc=True)]  # NHWC data (a tf2onnx input) seen as NCHW: held as it is
    if x.const:
        return [Value(np.transpose(x.data, perm))]
    return [Value(tf.transpose(nchw(tf, x), perm))]


@op("Pad")
def pad(node: NodeProto, inputs: list[Value | None], attrs: Attrs, tf: ModuleType) -> list[Value]:
    """Constant or reflect padding."""
    x = inputs[0]
    pads = attrs.get("pads")
    if pads is None:
        pads = const(node, inputs[1], "pads").tolist()
    value = 0.0
    if len(inputs) > 2 and inputs[2] is not None and inputs[2].data.size:
        value = float(const(node, inputs[2], "value"))
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect"):
        raise UnsupportedRoute(f"ONNX Pad {node.name} uses mode {mode!r}", fix="use constant or reflect padding")
    rank = x.rank
    pairs = [[int(pads[i]), int(pads[i + rank])] for i in range(rank)]
    if x.nhwc:
        pairs = [pairs[i] for i in TO_NHWC]
    tf_mode = "CONSTANT" if mode == "constant" else "REFLECT"
    return [Value(tf.pad(x.data, pairs, mode=tf_mode, constant_values=value), nhwc=x.nhwc)]
