"""Keras/TensorFlow backend: runs the source model so conversions can be checked against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.formats import Format
from edgekit.loaders.keras_loader import import_tf, load_keras_model
from edgekit.preprocess import guess_layout
from edgekit.runtimes import Runner, RunnerOptions

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact


class KerasRunner(Runner):
    """A Keras model called with training=False, or a SavedModel's serving signature."""

    def __init__(self, artifact: ModelArtifact, options: RunnerOptions) -> None:
        self._tf = import_tf()
        self.model = load_keras_model(artifact.path, artifact.format)
        self.is_saved_model = artifact.format is Format.SAVED_MODEL
        if self.is_saved_model:
            self._signature = self.model.signatures["serving_default"]
            specs = self._signature.structured_input_signature[1]
            self._input_names = list(specs)
            shapes = [specs[name].shape.as_list() for name in self._input_names]
            out_specs = self._signature.structured_outputs
            self._output_names = list(out_specs)
            out_shapes = [out_specs[name].shape.as_list() for name in self._output_names]
        else:
            self._input_names = [t.name for t in self.model.inputs]
            shapes = [list(t.shape) for t in self.model.inputs]
            self._output_names = [t.name for t in self.model.outputs]
            out_shapes = [list(t.shape) for t in self.model.outputs]
        self._inputs = [TensorSpec(name=n, shape=s, layout=guess_layout(s)) for n, s in zip(self._input_names, shapes)]
        self._outputs = [TensorSpec(name=n, shape=s) for n, s in zip(self._output_names, out_shapes)]

    def inputs(self) -> list[TensorSpec]:
        """The model's inputs (Keras image models are NHWC)."""
        return self._inputs

    def outputs(self) -> list[TensorSpec]:
        """The model's outputs."""
        return self._outputs

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch."""
        tensors = [self._tf.convert_to_tensor(np.asarray(x, np.float32)) for x in feeds]
        if self.is_saved_model:
            result = self._signature(**dict(zip(self._input_names, tensors)))
            return [np.asarray(result[name]) for name in self._output_names]
        result = self.model(tensors[0] if len(tensors) == 1 else tensors, training=False)
        items = result if isinstance(result, (list, tuple)) else [result]
        return [np.asarray(item) for item in items]

    def graph_output_meaning(self) -> str | None:
        """From the last layer: a Softmax layer or a softmax activation means probabilities."""
        from edgekit.output_meaning import LOGITS, PROBABILITIES

        layers = getattr(self.model, "layers", None)
        if self.is_saved_model or not layers:
            return None
        last = layers[-1]
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        return PROBABILITIES if type(last).__name__ == "Softmax" or activation == "softmax" else LOGITS

    def describe(self) -> str:
        """e.g. 'tensorflow 2.21.0 (keras 3.15.1)'."""
        import keras

        return f"tensorflow {self._tf.__version__} (keras {keras.__version__})"
