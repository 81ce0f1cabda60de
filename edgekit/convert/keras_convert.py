"""Keras / SavedModel -> TFLite (the TFLite converter) and -> ONNX (tf2onnx)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.convert.routes import ConvertJob
from edgekit.convert.tflite_converter import run_converter
from edgekit.errors import MissingDependency, UnsupportedRoute, first_line
from edgekit.fsutil import log_tail, quiet_native_output
from edgekit.interrupts import deferred_interrupt
from edgekit.loaders.keras_loader import import_tf

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    import tensorflow

    from edgekit.jsontypes import Json
    from edgekit.runtimes.keras_rt import KerasRunner

KERAS_ONNX_OPSET = 17


def to_tflite(job: ConvertJob) -> Json:
    """Convert with tf.lite.TFLiteConverter (fp32)."""
    tf = import_tf()
    runner = job.runner
    if runner.is_saved_model:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(job.source.path))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(runner.model)
    job.target.write_bytes(run_converter(converter.convert))
    return {"converter": f"tf.lite.TFLiteConverter (tensorflow {tf.__version__})"}


def to_onnx(job: ConvertJob) -> Json:
    """Convert with tf2onnx (NHWC input kept; tf2onnx's optimizer removes inner transposes).

    The model is traced through a tf.function (tf2onnx's from_keras trips over Keras 3 tensor names),
    then frozen: captured constants such as keras.layers.Normalization's mean and variance become
    graph constants, not the extra graph inputs tf2onnx would otherwise leave (EfficientNetB0)."""
    tf = import_tf()
    try:
        import tf2onnx
    except ImportError as exc:
        raise MissingDependency("converting Keras to ONNX", "tf2onnx", "tf") from exc
    runner = job.runner
    signature = [tf.TensorSpec(spec.shape, tf.float32, name=spec.name.split(":")[0]) for spec in runner.inputs()]
    opset = job.opset or KERAS_ONNX_OPSET
    with deferred_interrupt("tf2onnx"), quiet_native_output() as log:
        try:
            graph_def, inputs, outputs = _frozen_graph(tf, runner, signature)
            tf2onnx.convert.from_graph_def(
                graph_def, input_names=inputs, output_names=outputs, opset=opset, output_path=str(job.target)
            )
        except Exception as exc:
            raise UnsupportedRoute(
                f"tf2onnx failed ({first_line(exc, 200)})", fix=f"converter log: {log_tail(log)}"
            ) from exc
    _refuse_invalid_onnx(job.target)
    if not runner.is_saved_model:
        _record_source_layers(job.target, runner)
    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": opset}


def _frozen_graph(
    tf: ModuleType, runner: KerasRunner, signature: list[tensorflow.TensorSpec]
) -> tuple[tensorflow.compat.v1.GraphDef, list[str], list[str]]:
    """The model's inference as a GraphDef with every captured variable and constant inlined."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with _grouped_conv_without_xla():
        trace = _signature_function if runner.is_saved_model else _keras_function
        concrete = trace(tf, runner, signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    graph_def = frozen.graph.as_graph_def()
    _erfc_as_erf(graph_def)
    return graph_def, inputs, [t.name for t in frozen.outputs]


@contextlib.contextmanager
def _grouped_conv_without_xla() -> Iterator[None]:
    """Keras 3 runs a grouped convolution (ConvNeXt's depthwise layers as Conv2D(groups=...)) inside
    tf.function(jit_compile=True), because TensorFlow's CPU kernel lacks it; traced, that call is a
    StatefulPartitionedCall no ONNX runtime can run. While tracing for ONNX, the plain grouped Conv2D
    is recorded instead, which tf2onnx writes as an ONNX Conv with `group`."""
    try:
        from keras.src.backend.tensorflow import nn as keras_tf_nn
    except ImportError:  # another Keras layout: nothing to change
        yield
        return
    real = keras_tf_nn.tf

    class _TraceableTf:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        @staticmethod
        def function(*args: object, **kwargs: object) -> object:
            if kwargs.get("jit_compile") and not args:
                return lambda fn: fn
            return real.function(*args, **kwargs)

    keras_tf_nn.tf = _TraceableTf()
    try:
        yield
    finally:
        keras_tf_nn.tf = real


def _refuse_invalid_onnx(path: Path) -> None:
    """What tf2onnx wrote must be valid ONNX; if not, the route is unsupported (exit 6), named by the
    node and layer it failed on, and nothing is kept."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except onnx.checker.ValidationError as exc:
        path.unlink(missing_ok=True)
        raise UnsupportedRoute(
            f"tf2onnx wrote an invalid ONNX graph ({first_line(exc, 250)})",
            fix="convert this Keras model to TFLite instead (edgekit convert --to tflite)",
        ) from exc


def _record_source_layers(path: Path, runner: KerasRunner) -> None:
    """Tag each ONNX node with the Keras layer it comes from, so that reports and --keep-float can name
    layers as the user's model does (tf2onnx names fused convolutions 'Conv__361')."""
    import onnx

    from edgekit.convert.onnx_names import tag_source_layers
    from edgekit.inspectors.framework_info import leaf_layers

    model = onnx.load(str(path))
    if tag_source_layers(model.graph, {layer.name for layer in leaf_layers(runner.model)}):
        onnx.save(model, str(path))


def _erfc_as_erf(graph_def: tensorflow.compat.v1.GraphDef) -> None:
    """TensorFlow's Erfc (Keras's exact GELU: 0.5 x erfc(-x/sqrt 2)) has no ONNX op: 1 - Erf instead."""
    from tensorflow.core.framework import attr_value_pb2, node_def_pb2, tensor_pb2, types_pb2

    for node in [n for n in graph_def.node if n.op == "Erfc"]:
        name = node.name
        erf = node_def_pb2.NodeDef(name=f"{name}/as_erf", op="Erf", input=list(node.input))
        erf.attr["T"].CopyFrom(node.attr["T"])
        one = node_def_pb2.NodeDef(name=f"{name}/one", op="Const")
        one.attr["dtype"].CopyFrom(attr_value_pb2.AttrValue(type=types_pb2.DT_FLOAT))
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
        one.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tensor))
        node.op, node.input[:] = "Sub", [one.name, erf.name]  # keeps its name: consumers are unchanged
        graph_def.node.extend([erf, one])


def _keras_function(
    tf: ModuleType, runner: KerasRunner, signature: list[tensorflow.TensorSpec]
) -> Callable[..., tensorflow.Tensor]:
    """The Keras model's inference call as a tf.function with a fixed signature."""
    model = runner.model

    @tf.function(input_signature=signature)
    def serve(*args: tensorflow.Tensor) -> tensorflow.Tensor:
        return model(args[0] if len(args) == 1 else list(args), training=False)

    return serve


def _signature_function(
    tf: ModuleType, runner: KerasRunner, signature: list[tensorflow.TensorSpec]
) -> Callable[..., list[tensorflow.Tensor]]:
    """The SavedModel's serving signature as a positional tf.function that tf2onnx can trace."""
    serving = runner.model.signatures["serving_default"]
    input_names = [spec.name for spec in runner.inputs()]
    output_names = [spec.name for spec in runner.outputs()]

    @tf.function(input_signature=signature)
    def serve(*args: tensorflow.Tensor) -> list[tensorflow.Tensor]:
        result = serving(**dict(zip(input_names, args)))
        return [result[name] for name in output_names]

    return serve
