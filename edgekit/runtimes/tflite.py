"""TFLite backend: ai-edge-litert, else tflite-runtime (old Raspberry Pi OS), else tf.lite."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.devices import package_version, usable_cores
from edgekit.errors import BadInput, DeviceUnavailable, MissingDependency, first_line
from edgekit.fsutil import quiet_native_output
from edgekit.preprocess import guess_layout
from edgekit.runtimes import Runner, RunnerOptions, dequantize, quantize

if TYPE_CHECKING:
    from collections.abc import Callable

    from ai_edge_litert.interpreter import Delegate, Interpreter

    from edgekit.artifact import ModelArtifact
    from edgekit.devices import DeviceProfile

# Tried in order; the first that imports is used and named in describe().
INTERPRETERS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


def find_interpreter() -> tuple[str, Any, str]:
    """(package name, Interpreter class, version) of the first TFLite runtime that imports."""
    for package, module_name in INTERPRETERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return package, module.Interpreter, package_version(package)
    raise MissingDependency("running a TFLite model", "ai-edge-litert", "tflite")


@dataclasses.dataclass
class TFLiteGraph:
    """A .tflite's own operators and tensors, read once (names decoded, so a damaged file fails here)."""

    interpreter: Interpreter
    tensors: dict[int, dict[str, object]]  # tensor index -> the interpreter's tensor details
    ops: list[dict[str, object]]


def read_graph(path: Any) -> TFLiteGraph:
    """The model's graph from an interpreter without XNNPACK, which would replace its operators by
    DELEGATE nodes. For reading the graph (inspect, the Edge TPU check), not for timing."""
    package, interpreter_class, _ = find_interpreter()
    options: dict[str, object] = {}
    if package != "tensorflow":
        module = importlib.import_module(dict(INTERPRETERS)[package])
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = interpreter_class(model_path=str(path), **options)
        interpreter.allocate_tensors()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()
    except (ValueError, RuntimeError) as exc:  # UnicodeDecodeError (a damaged name) is a ValueError
        raise BadInput(f"{path} could not be opened as TFLite ({first_line(exc)})", fix="re-convert the model") from exc
    return TFLiteGraph(interpreter, tensors, ops)


# The Edge TPU runtime's library name on each platform (pycoral's utils/edgetpu.py uses the same).
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def _edgetpu_library(device: DeviceProfile | None) -> str:
    import platform

    return EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")


def _gpu_library(device: DeviceProfile | None) -> str:
    library = (device.host.get("gpu_delegate") if device else None) or ""
    if not library:
        raise DeviceUnavailable(
            "no TFLite GPU delegate library given (the Python wheels ship none)",
            fix="build libtensorflowlite_gpu_delegate.so and set host.gpu_delegate in the profile",
        )
    return str(library)


# Delegate name in device profiles -> the shared library to load for it. A new delegate is one
# function and one line here, plus the profile that names it. xnnpack is built into the interpreter.
DELEGATES: dict[str, Callable[[DeviceProfile | None], str]] = {"edgetpu": _edgetpu_library, "gpu": _gpu_library}


def load_delegate(package: str, name: str, device: DeviceProfile | None) -> Delegate:
    """Load a TFLite delegate by name; DeviceUnavailable saying what to install when it is absent."""
    if name not in DELEGATES:
        raise DeviceUnavailable(f"unknown TFLite delegate {name!r}", fix=f"use xnnpack, {', '.join(DELEGATES)}")
    library = DELEGATES[name](device)
    module = importlib.import_module(
        "tensorflow.lite.experimental" if package == "tensorflow" else dict(INTERPRETERS)[package]
    )
    try:
        ctypes.CDLL(library)  # probe first: a failed load_delegate leaves a half-built Delegate that prints on exit
        return module.load_delegate(library)
    except (OSError, ValueError, RuntimeError) as exc:
        install = (
            device.install.rstrip(".") if device and device.install else f"install the library providing {library}"
        )
        raise DeviceUnavailable(
            f"the {name} delegate cannot be loaded: {library} ({first_line(exc, 150)})",
            fix=f"{install}; or pass --allow-fallback to run on the CPU and say so",
        ) from exc


class TFLiteRunner(Runner):
    """A TFLite Interpreter (XNNPACK is the default CPU delegate in ai-edge-litert)."""

    def __init__(self, artifact: ModelArtifact, options: RunnerOptions) -> None:
        self._package, interpreter_class, self._version = find_interpreter()
        self.fallback: str | None = None
        self._path = artifact.path
        delegates = self._delegates(options.device, options.allow_fallback)
        try:
            with quiet_native_output():  # the runtime announces its XNNPACK delegate on stderr
                # The interpreter defaults to one thread; use every core this process may run on, as onnxruntime does.
                self._interpreter = interpreter_class(
                    model_path=str(artifact.path),
                    num_threads=options.threads or usable_cores(),
                    experimental_delegates=delegates or None,
                )
                self._interpreter.allocate_tensors()
            self._in_details = self._interpreter.get_input_details()  # decodes names: a damaged file fails here
            self._out_details = self._interpreter.get_output_details()
        except (ValueError, RuntimeError) as exc:  # UnicodeDecodeError is a ValueError
            first = first_line(exc)
            raise BadInput(
                f"{artifact.path} could not be opened as TFLite ({first})", fix="re-convert the model"
            ) from exc
        stored = {s.name: s for s in artifact.inputs}
        self._inputs = [self._spec(d, stored.get(d["name"])) for d in self._in_details]
        self._outputs = [self._spec(d, None) for d in self._out_details]

    def _delegates(self, device: DeviceProfile | None, allow_fallback: bool) -> list[Delegate]:
        """Load the device's non-default delegates (edgetpu, gpu); XNNPACK is built in."""
        loaded, self._delegate_names = [], []
        for name in device.delegates if device else []:
            if name == "xnnpack":
                continue
            try:
                loaded.append(load_delegate(self._package, name, device))
                self._delegate_names.append(name)
            except DeviceUnavailable:
                if not allow_fallback:
                    raise
                self.fallback = f"{name} unavailable, ran on the CPU"
        return loaded

    @staticmethod
    def _spec(detail: dict[str, object], stored: TensorSpec | None) -> TensorSpec:
        shape = [int(d) if d > 0 else None for d in detail.get("shape_signature", detail["shape"])]
        scale, zero_point = detail.get("quantization", (0.0, 0))
        quantized = np.dtype(detail["dtype"]).kind in "iu" and scale
        layout = stored.layout if stored and stored.layout else guess_layout(shape)
        return TensorSpec(
            name=detail["name"],
            shape=shape,
            dtype=np.dtype(detail["dtype"]).name,
            layout=layout,
            scale=float(scale) if quantized else None,
            zero_point=int(zero_point) if quantized else None,
        )

    def inputs(self) -> list[TensorSpec]:
        """The interpreter's inputs, with quantization for int8/uint8 ones."""
        return self._inputs

    def outputs(self) -> list[TensorSpec]:
        """The interpreter's outputs."""
        return self._outputs

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch, quantizing int8 inputs and dequantizing int8 outputs."""
        for detail, spec, value in zip(self._in_details, self._inputs, feeds):
            dtype = np.dtype(detail["dtype"])
            value = quantize(value, spec, dtype) if spec.scale else np.asarray(value, dtype=dtype)
            try:
                if tuple(value.shape) != tuple(detail["shape"]):
                    self._interpreter.resize_tensor_input(detail["index"], value.shape)
                    self._interpreter.allocate_tensors()
                self._interpreter.set_tensor(detail["index"], value)
            except (ValueError, RuntimeError) as exc:
                raise BadInput(
                    f"{self._path} cannot take an input of shape {list(value.shape)} ({first_line(exc)})",
                    fix="check the input shape the model expects (edgekit inspect)",
                ) from exc
        try:
            self._interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise BadInput(
                f"the TFLite runtime could not run {self._path} ({first_line(exc)})", fix="re-convert the model"
            ) from exc
        results = []
        for detail, spec in zip(self._out_details, self._outputs):
            raw = self._interpreter.get_tensor(detail["index"])
            results.append(dequantize(raw, spec) if spec.scale else np.array(raw))
        return results

    def graph_output_meaning(self) -> str | None:
        """From the operators before output 0, read without delegates (which would hide them)."""
        from edgekit.output_meaning import kind_from_ops, ops_before

        graph = read_graph(self._path)
        producer = {int(out): op for op in graph.ops for out in op["outputs"]}
        start = int(self._out_details[0]["index"]) if self._out_details else -1
        chain = ops_before(
            start, producer, lambda op: op["op_name"], lambda op: int(op["inputs"][0]) if len(op["inputs"]) else None
        )
        return kind_from_ops(chain)

    def describe(self) -> str:
        """e.g. 'ai-edge-litert 2.3.0 (XNNPACK)'."""
        delegate = "XNNPACK" if self._package != "tensorflow" else "built-in kernels"
        if self._delegate_names:
            delegate = " + ".join(self._delegate_names)
        return f"{self._package} {self._version} ({delegate})" + (
            f" [fallback: {self.fallback}]" if self.fallback else ""
        )
