"""ONNX -> TFLite (fp32) through edgekit's own NHWC translator and the TFLite converter.

Chosen on evidence (../shared/REAL_MODELS.md, README "torch -> TFLite route"): onnx2tf 2.x needs
Python >= 3.12 and 1.x downgrades TF/numpy/onnx, and litert-torch adds ~940 MB; this route needs
only TensorFlow and gives NHWC models with no transposes around convolutions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.convert import onnx_tf_index_ops  # noqa: F401  (registers Resize, ConvTranspose, Slice, Gather)
from edgekit.convert.onnx_names import tf_scope
from edgekit.convert.onnx_tf_ops import OPS, TO_NHWC, Value, nchw
from edgekit.convert.tflite_converter import run_converter
from edgekit.errors import BadInput, MissingDependency, UnsupportedRoute, first_line
from edgekit.interrupts import deferred_interrupt
from edgekit.loaders.keras_loader import import_tf
from edgekit.preprocess import guess_layout

if TYPE_CHECKING:
    from types import ModuleType

    from edgekit.convert.routes import ConvertJob
    from edgekit.jsontypes import Json


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise MissingDependency("converting ONNX", "onnx and onnxruntime", "onnx") from exc
    return onnx, onnxruntime


def fold_constants(source: Path, input_shape: list[int] | None) -> Any:
    """Fix the batch (or all) input dims, then let onnxruntime fold constants and shape arithmetic."""
    onnx, ort = _onnx()
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise BadInput(f"{source} is not a readable ONNX model ({exc})", fix="re-export it") from exc
    initializers = {i.name for i in model.graph.initializer}
    for graph_input in (i for i in model.graph.input if i.name not in initializers):
        dims = graph_input.type.tensor_type.shape.dim
        for index, dim in enumerate(dims):
            if input_shape is not None:
                dim.dim_value = int(input_shape[index])
            elif not dim.dim_value:
                if index:
                    raise BadInput(
                        f"ONNX input {graph_input.name!r} has a dynamic dimension {index}",
                        fix="pass --input-shape with the full static shape",
                    )
                dim.dim_value = 1
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
        fixed, folded = Path(tmp) / "fixed.onnx", Path(tmp) / "folded.onnx"
        onnx.save(model, str(fixed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = first_line(exc, 250, from_end=True)
            raise BadInput(
                f"onnxruntime cannot load {source} ({first})",
                fix="re-export it with an opset/IR version this onnxruntime supports",
            ) from exc
        return onnx.load(str(folded))


def build_concrete_function(model: Any) -> tuple[tuple[Any, Any], list[TensorSpec], list[TensorSpec]]:
    """Translate an ONNX graph into a TF concrete function (and its owning module), NHWC inputs."""
    tf = import_tf()
    from onnx import helper, numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in constants]
    shapes = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph_inputs]
    # A 4-D NCHW input becomes NHWC; an ONNX model that already takes NHWC (tf2onnx) keeps its shape.
    channels_first = [len(shape) == 4 and guess_layout(shape) == "NCHW" for shape in shapes]
    signature = [
        tf.TensorSpec([s[i] for i in TO_NHWC] if first else s, tf.float32, name=f"input_{n}")
        for n, (s, first) in enumerate(zip(shapes, channels_first))
    ]

    def forward(*args: Any) -> list[Any]:
        env: dict[str, Value] = {n: Value(v) for n, v in constants.items()}
        for graph_input, arg, first in zip(graph_inputs, args, channels_first):
            env[graph_input.name] = Value(arg, nhwc=first)
        for node in model.graph.node:
            if node.op_type == "Constant":
                env[node.output[0]] = Value(numpy_helper.to_array(node.attribute[0].t))
                continue
            handler = OPS.get(node.op_type)
            if handler is None:
                raise UnsupportedRoute(
                    f"ONNX operator {node.op_type} (node {node.name!r}) has no TFLite translation yet",
                    fix="convert this model to ONNX only, or open an issue with the model",
                )
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            ins = [env[name] if name else None for name in node.input]
            with tf.name_scope(tf_scope(node)):
                outs = handler(node, ins, attrs, tf)
            for name, value in zip(node.output, outs):
                env[name] = value
        # Outputs keep the source's layout (a 4-D map stays NCHW): users get the shape their model has.
        return [_as_tensor(tf, Value(nchw(tf, env[o.name]))) for o in model.graph.output]

    module = tf.Module()
    module.forward = tf.function(forward, input_signature=signature, autograph=False)
    concrete = module.forward.get_concrete_function()
    inputs = [
        TensorSpec(name=s.name, shape=list(s.shape), layout="NHWC" if len(s.shape) == 4 else None) for s in signature
    ]
    outputs = [
        TensorSpec(name=o.name, shape=t.shape.as_list(), layout="NCHW" if t.shape.rank == 4 else None)
        for o, t in zip(model.graph.output, concrete.outputs)
    ]
    return (concrete, module), inputs, outputs


def _as_tensor(tf: ModuleType, value: Value) -> Any:
    data = value.data
    return tf.constant(data.astype(np.float32) if data.dtype == np.float64 else data) if value.const else data


def concrete_to_tflite(function: tuple[Any, Any]) -> bytes:
    """Run the TFLite converter (fp32) on (concrete function, owning module)."""
    tf = import_tf()
    concrete, module = function
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    return run_converter(converter.convert)


def onnx_to_tflite(
    source: Path, target: Path, input_shape: list[int] | None
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Convert an ONNX file to an fp32 NHWC TFLite file; returns its input and output specs."""
    model = fold_constants(source, input_shape)
    with deferred_interrupt("TensorFlow's tracing"):
        concrete, inputs, outputs = build_concrete_function(model)
    target.write_bytes(concrete_to_tflite(concrete))
    return inputs, outputs


def convert(job: ConvertJob) -> Json:
    """Route entry: ONNX source -> TFLite at job.target."""
    onnx_to_tflite(job.source.path, job.target, job.input_shape)
    return {"route": "ONNX -> edgekit NHWC translator -> TFLite converter"}
