"""Runners: one interface over onnxruntime, TFLite and the source frameworks.

Only runner modules import a runtime. `open_runner` picks the backend from the format table.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import TYPE_CHECKING

import numpy as np

from edgekit.formats import FAMILIES

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact, TensorSpec
    from edgekit.devices import DeviceProfile
    from edgekit.loaders import LoadOptions


@dataclasses.dataclass
class RunnerOptions:
    """How to open a model: threads, source-model loading, spinning, and the device to run on.

    spin=False stops onnxruntime's worker threads from busy-waiting, so that several sessions timed
    side by side in one process do not slow each other down (measured: 4.8 -> 7.6 ms on 2 cores).
    `device` asks for its delegates/providers; a missing one raises DeviceUnavailable unless
    `allow_fallback`, and then `describe()` says what actually ran.
    `exact_int8` (onnxruntime) runs int8 QDQ models unfused, Q/DQ as float operations: the exact int8
    arithmetic of a CPU whose kernels do not saturate, for a host whose kernels do (slower).
    """

    threads: int | None = None
    load: LoadOptions | None = None
    spin: bool = True
    device: DeviceProfile | None = None
    allow_fallback: bool = False
    exact_int8: bool = False


class Runner(abc.ABC):
    """An opened model: describe its tensors, run float inputs, return float outputs."""

    # True when `infer` may be called from several threads at once (the camera loop's workers then
    # share one runner instead of each loading the model).
    concurrent: bool = False
    artifact: ModelArtifact | None = None  # what it was opened from (set by open_runner)
    # What its results here need said, also in describe(): e.g. int8 kernels that clip on this CPU
    caveat: str | None = None

    @abc.abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """The input tensors (shape, dtype, layout, quantization)."""

    @abc.abstractmethod
    def outputs(self) -> list[TensorSpec]:
        """The output tensors."""

    @abc.abstractmethod
    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; inputs and outputs are float32 (int8 IO is (de)quantized here)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Which runtime and version ran, with its delegate or provider."""

    def graph_output_meaning(self) -> str | None:
        """'probabilities' or 'logits' for output 0, read from the model's graph; None when this
        runtime cannot tell (see edgekit.output_meaning)."""
        return None

    def close(self) -> None:
        """Release the session or interpreter."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_runner(
    artifact: ModelArtifact,
    *,
    threads: int | None = None,
    load: LoadOptions | None = None,
    spin: bool = True,
    device: DeviceProfile | None = None,
    allow_fallback: bool = False,
    exact_int8: bool = False,
) -> Runner:
    """Open `artifact` with the runner for its format family (options as in RunnerOptions)."""
    from edgekit.loaders import LoadOptions

    backend = FAMILIES[artifact.format.family]  # the family registry: a new backend is one line there
    if device is not None and device.runtime not in ("any", backend.runtime):
        from edgekit.errors import UnsupportedRoute

        raise UnsupportedRoute(
            f"device {device.name} runs {device.runtime} models, not {artifact.format.value}",
            fix=f"convert or quantize the model to {device.runtime} first",
        )
    module_name, _, class_name = backend.runner.partition(":")
    runner_class = getattr(importlib.import_module(module_name), class_name)
    settings = RunnerOptions(threads, load or LoadOptions(), spin, device, allow_fallback, exact_int8)
    runner = runner_class(artifact, settings)
    runner.artifact = artifact
    return runner


def quantize(values: np.ndarray, spec: TensorSpec, dtype: np.dtype) -> np.ndarray:
    """Float -> int8/uint8 with the tensor's scale and zero point (pycoral's adapters do the same)."""
    info = np.iinfo(dtype)
    scaled = np.round(values / spec.scale + spec.zero_point)
    return np.clip(scaled, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """int8/uint8 -> float with the tensor's scale and zero point."""
    return ((values.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


def feeds_key(feeds: list[np.ndarray]) -> bytes:
    """A digest of a runner's inputs: outputs remembered per input (MemoRunner, a board's run) are
    looked up by it."""
    import hashlib

    return hashlib.sha1(b"".join(np.ascontiguousarray(f).tobytes() for f in feeds)).digest()
