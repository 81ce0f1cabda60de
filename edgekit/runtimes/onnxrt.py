"""onnxruntime backend (graph optimisation 'all'; levels below it are 2-3x slower on CNNs)."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.errors import BadInput, DeviceUnavailable, MissingDependency, first_line
from edgekit.preprocess import guess_layout
from edgekit.runtimes import Runner, RunnerOptions

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact
    from edgekit.devices import DeviceProfile

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(double)": "float64",
}


class OnnxRunner(Runner):
    """An onnxruntime InferenceSession on the CPU provider."""

    concurrent = True  # InferenceSession.run is thread-safe; shared, the weights are loaded once

    def __init__(self, artifact: ModelArtifact, settings: RunnerOptions) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependency("running an ONNX model", "onnxruntime", "onnx") from exc
        self._ort = ort
        self._path = artifact.path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 4  # errors reach the user as one edgekit line
        if settings.threads:
            options.intra_op_num_threads = settings.threads
        if not settings.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if settings.exact_int8:
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        self.fallback: str | None = None
        self.caveat = None if settings.exact_int8 else saturation_caveat(artifact)
        providers = self._providers(settings.device, settings.allow_fallback)
        try:
            # onnxruntime prints its own retry banner to stdout when a provider fails to start.
            with contextlib.redirect_stdout(io.StringIO()):
                self._session = ort.InferenceSession(str(artifact.path), options, providers=providers)
        except Exception as exc:
            first = first_line(exc)
            raise BadInput(
                f"{artifact.path} could not be opened by onnxruntime ({first})", fix="re-export the model"
            ) from exc
        self._refuse_silent_fallback(providers, settings.allow_fallback)
        stored = {s.name: s for s in artifact.inputs}
        self._inputs = [self._spec(i, stored.get(i.name)) for i in self._session.get_inputs()]
        self._outputs = [self._spec(o, None) for o in self._session.get_outputs()]

    def _providers(self, device: DeviceProfile | None, allow_fallback: bool) -> list[str]:
        """The device's execution providers that exist here, CPU last; a missing one is an error
        unless allow_fallback (onnxruntime itself would fall back silently)."""
        wanted = list(device.providers) if device else ["CPUExecutionProvider"]
        available = self._ort.get_available_providers()
        missing = [p for p in wanted if p not in available]
        if missing and not allow_fallback:
            raise DeviceUnavailable(
                f"onnxruntime {self._ort.__version__} here has no {', '.join(missing)} (it has {', '.join(available)})",
                fix=(
                    device.install.rstrip(".")
                    if device and device.install
                    else "install the matching onnxruntime build"
                )
                + "; or pass --allow-fallback to run on the CPU and say so",
            )
        if missing:
            ran = ", ".join(p for p in wanted if p in available) or "the CPU"
            self.fallback = f"{', '.join(missing)} unavailable, ran on {ran}"
        chosen = [p for p in wanted if p in available]
        return [*chosen, "CPUExecutionProvider"] if "CPUExecutionProvider" not in chosen else chosen

    def _refuse_silent_fallback(self, requested: list[str], allow_fallback: bool) -> None:
        """onnxruntime quietly retries on the CPU when a provider fails to start, and again when one
        fails mid-run; turn the first into an error (or a stated fallback) and switch the second off."""
        self._session.disable_fallback()
        dropped = [p for p in requested if p not in self._session.get_providers()]
        if dropped and not allow_fallback:
            raise DeviceUnavailable(
                f"onnxruntime could not start {', '.join(dropped)} for this model",
                fix="check the driver and libraries it needs (run with -v); or pass --allow-fallback "
                "to run on the CPU and say so",
            )
        if dropped:
            self.fallback = f"{', '.join(dropped)} failed to start, ran on the CPU"

    @staticmethod
    def _spec(node, stored: TensorSpec | None) -> TensorSpec:
        shape = [d if isinstance(d, int) else None for d in node.shape]
        layout = stored.layout if stored and stored.layout else guess_layout(shape)
        return TensorSpec(name=node.name, shape=shape, dtype=_DTYPES.get(node.type, node.type), layout=layout)

    def inputs(self) -> list[TensorSpec]:
        """The session's inputs."""
        return self._inputs

    def outputs(self) -> list[TensorSpec]:
        """The session's outputs."""
        return self._outputs

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch."""
        named = {spec.name: np.asarray(x, dtype=spec.dtype) for spec, x in zip(self._inputs, feeds)}
        try:
            outputs = self._session.run(None, named)
        except Exception as exc:  # onnxruntime's errors (Fail, InvalidArgument, ...) share no base class
            raise BadInput(
                f"onnxruntime could not run {self._path} ({first_line(exc)})",
                fix="check the input shape the model expects (edgekit inspect), or re-export the model",
            ) from exc
        return [np.asarray(out) for out in outputs]

    def graph_output_meaning(self) -> str | None:
        """From the graph, when the onnx package is here to read it (a Pi install may lack it)."""
        try:
            import onnx
        except ImportError:
            return None
        from edgekit.output_meaning import kind_from_ops, ops_before

        try:
            graph = onnx.load(str(self._path), load_external_data=False).graph
        except Exception:  # noqa: BLE001 - onnxruntime opened it; a graph onnx cannot read stays unknown
            return None
        producer = {out: node for node in graph.node for out in node.output}
        start = graph.output[0].name if graph.output else ""
        return kind_from_ops(
            ops_before(start, producer, lambda n: n.op_type, lambda n: n.input[0] if n.input else None)
        )

    def describe(self) -> str:
        """e.g. 'onnxruntime 1.31.1 (CPUExecutionProvider)'."""
        ran = f"onnxruntime {self._ort.__version__} ({', '.join(self._session.get_providers())})"
        notes = ([f"fallback: {self.fallback}"] if self.fallback else []) + ([self.caveat] if self.caveat else [])
        return " ".join([ran, *(f"[{note}]" for note in notes)])


def saturation_caveat(artifact: ModelArtifact) -> str | None:
    """What to say when `artifact` is an int8 model quantized for a CPU preset whose 8-bit weights this
    host's int8 kernels saturate on (edgekit.quantize.cpu), so that it drifts more here than recorded."""
    from edgekit.quantize.cpu import PRESETS, saturates_here

    made = next((entry for entry in reversed(artifact.lineage) if entry.get("step") == "quantize"), None)
    options = made.get("options") if made else None
    name = options.get("cpu_preset") if isinstance(options, dict) else None
    if not isinstance(name, str) or name not in PRESETS or not saturates_here(PRESETS[name]):
        return None
    return (
        f"int8 for {name}: this CPU has no VNNI, so its int8 kernels saturate with 8-bit weights and the model "
        "drifts more than its sidecar says; re-quantize with --cpu x86-avx2"
    )
