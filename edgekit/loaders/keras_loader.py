"""Load Keras 3 models (.keras, legacy .h5) with safe_mode on, and TensorFlow SavedModels."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import BadInput, MissingDependency, first_line
from edgekit.formats import Format
from edgekit.fsutil import quiet_native_output

if TYPE_CHECKING:
    import keras
    import tensorflow


def import_tf():
    """Import TensorFlow quietly, or raise MissingDependency. Its C++ side prints absl and oneDNN
    notices on fd 2 while loading, whatever TF_CPP_MIN_LOG_LEVEL says; from the CLI (without -v) the
    first import runs with fds 1 and 2 sent to a log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = os.environ.get("EDGEKIT_QUIET_IMPORTS") == "1" and "tensorflow" not in sys.modules
    try:
        with quiet_native_output() if quiet else contextlib.nullcontext():
            import tensorflow as tf
    except ImportError as exc:
        raise MissingDependency("loading a Keras/TensorFlow model", "TensorFlow", "tf") from exc
    return tf


def load_keras_model(path: Path, fmt: Format) -> keras.Model | tensorflow.Module:
    """A Keras model, or for a SavedModel the loaded object with its serving signature."""
    tf = import_tf()
    if fmt is Format.SAVED_MODEL:
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise BadInput(
                f"{path} could not be loaded as a SavedModel ({first_line(exc)})", fix="re-export it"
            ) from exc
        if "serving_default" not in getattr(loaded, "signatures", {}):
            raise BadInput(f"SavedModel {path} has no serving_default signature", fix="export it with a signature")
        return loaded
    import keras

    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        text = first_line(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise BadInput(
                f"{path} contains a Lambda layer with Python code, which safe mode refuses to load",
                fix="rebuild the model without Lambda layers (or with a registered custom layer)",
            ) from exc
        raise BadInput(f"{path} could not be loaded as a Keras model ({text})", fix="re-save it with Keras 3") from exc
