"""Keras / SavedModel -> TFLite (the TFLite converter) and -> ONNX (tf2onnx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekit.convert.routes import ConvertJob
from edgekit.convert.tflite_converter import run_converter
from edgekit.errors import MissingDependency, UnsupportedRoute, first_line
from edgekit.fsutil import log_tail, quiet_native_output
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

    The model is traced through a tf.function (tf2onnx's from_keras trips over Keras 3 tensor names)."""
    tf = import_tf()
    try:
        import tf2onnx
    except ImportError as exc:
        raise MissingDependency("converting Keras to ONNX", "tf2onnx", "tf") from exc
    runner = job.runner
    signature = [tf.TensorSpec(spec.shape, tf.float32, name=spec.name.split(":")[0]) for spec in runner.inputs()]
    opset = job.opset or KERAS_ONNX_OPSET
    function = (
        _signature_function(tf, runner, signature) if runner.is_saved_model else _keras_function(tf, runner, signature)
    )
    with quiet_native_output() as log:
        try:
            tf2onnx.convert.from_function(function, input_signature=signature, opset=opset, output_path=str(job.target))
        except Exception as exc:
            raise UnsupportedRoute(
                f"tf2onnx failed ({first_line(exc, 200)})", fix=f"converter log: {log_tail(log)}"
            ) from exc
    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": opset}


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
