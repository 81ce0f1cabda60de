"""Empirical bias correction for full-integer TFLite models: the ONNX method of edgekit.quantize.onnx_bias
applied to the int32 biases of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, edited in the flatbuffer
in place (same size, same layout, so nothing else in the file moves).

Both models run on the runtime's default kernels (XNNPACK on a CPU), the ones the user's runs use, with
the measured tensors made graph outputs (XNNPACK keeps no intermediate tensor); the reference kernels,
which keep every tensor, are used only to read the graph. The float model must come from the same
converter run as the int8 one, so that tensor names match.
TFLite fuses the activation into the layer, so both sides are post-activation: values within one
quantization step of the output's range ends (a ReLU6's 0 and 6) are left out of the mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgekit.quantize.onnx_bias import BiasCorrection, mean_shift

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def correct_tflite_biases(
    float_model: bytes,
    quant_model: bytes,
    samples: list[np.ndarray],
    progress: Callable[[str], None],
    earlier: dict[str, tuple[np.ndarray, float]] | None = None,
    threads: int | None = None,
) -> tuple[bytes, BiasCorrection]:
    """`quant_model` with corrected int32 biases, and what was done; `samples` are float inputs, run
    on `threads` threads of the runtime's default kernels.

    `earlier` keeps each corrected bias under a key of everything that ran before it (see
    `_prefix_keys`): a budget round that keeps a layer in float changes nothing before that layer, so
    the layers there take their earlier correction as it was (exactly what a new measurement would
    give) and only the layers after it are measured again. Share one dict only between models made
    from the same float model (the key covers the samples and the int8 model, not the float one)."""
    started = time.perf_counter()
    data = own_bias_buffers(quant_model)
    targets = _targets(reference_interpreter(bytes(data)), reference_interpreter(float_model), data, samples)
    if not targets or not samples:
        return quant_model, BiasCorrection(0, len(samples), time.perf_counter() - started, 0.0)
    earlier = {} if earlier is None else earlier
    reused = 0
    shifts = []
    while reused < len(targets) and targets[reused].key in earlier:
        bias, shift_size = earlier[targets[reused].key]
        targets[reused].bias[:] = bias
        shifts.append(shift_size)
        reused += 1
    if reused:
        progress(f"bias correction: {reused} of {len(targets)} layers as in the earlier round")
    todo = targets[reused:]
    if todo:
        float_outputs = runtime_tensors(float_model, [t.float_tensor for t in todo], samples, np.float16, threads)
        probe = bytearray(with_outputs(bytes(data), [t.quant_tensor for t in todo]))
        probe_biases = bias_views(probe, [t.bias_tensor for t in todo])
    for index, target in enumerate(todo):
        progress(f"bias correction: layer {reused + index + 1} of {len(targets)}")
        quant = collect_tensors(runtime_interpreter(bytes(probe), threads), [target.quant_tensor], samples, np.float32)
        shift = mean_shift([q[0] for q in quant], [f[index] for f in float_outputs], target.kept_range, -1)
        corrected = np.clip(np.round(target.bias - shift / target.bias_scale), -(2**31), 2**31 - 1)
        target.bias[:] = probe_biases[index][:] = corrected.astype(np.int32)
        shifts.append(float(np.abs(shift).mean()))
        earlier[target.key] = (target.bias.copy(), shifts[-1])
    seconds = time.perf_counter() - started
    return bytes(data), BiasCorrection(len(targets), len(samples), seconds, float(np.mean(shifts)))


class _Target:
    """One int8 layer: its output tensor in both models, its int32 bias tensor and a writable view of
    that bias inside the flatbuffer, the bias scales, the float range its output can represent, and the
    key of what ran up to it (for reuse by later rounds)."""

    def __init__(
        self,
        tensors: tuple[int, int, int],
        bias: np.ndarray,
        bias_scale: np.ndarray,
        kept: tuple,
        key: str,
    ):
        self.quant_tensor, self.float_tensor, self.bias_tensor = tensors
        self.bias = bias
        self.bias_scale, self.kept_range = bias_scale, kept
        self.key = key  # what ran up to this layer, uncorrected (see _prefix_keys)


def own_bias_buffers(model: bytes, rewrite: bool = False) -> bytearray:
    """The model with every int32 bias of a weighted op in a buffer of its own: the converter stores
    equal constants once (all-zero biases of an untrained or bias-free net share one buffer), and a
    correction of one must not move the others. With `rewrite` the file is written again even when
    no buffer was shared, which also gives every tensor quantization vectors of its own (a file from
    share_identical_vectors stores equal scales once)."""
    from tensorflow.lite.python import schema_py_generated as schema

    from edgekit.quantize.tflite_compact import pack_model

    unpacked = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph, ops = unpacked.subgraphs[0], unpacked.operatorCodes
    users: dict[int, int] = {}
    for tensor in graph.tensors:
        users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    weighted = {getattr(schema.BuiltinOperator, kind) for kind in WEIGHTED_OPS}
    copied = False
    for op in graph.operators:
        code = ops[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin not in weighted or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        tensor = graph.tensors[op.inputs[2]]
        if users[tensor.buffer] > 1 and unpacked.buffers[tensor.buffer].data is not None:
            own = schema.BufferT()
            own.data = np.array(unpacked.buffers[tensor.buffer].data, np.uint8)
            users[tensor.buffer] -= 1
            unpacked.buffers.append(own)
            tensor.buffer = len(unpacked.buffers) - 1
            users[tensor.buffer] = 1
            copied = True
    return bytearray(pack_model(unpacked, len(model))) if copied or rewrite else bytearray(model)


def with_outputs(model: bytes, tensors: list[int]) -> bytes:
    """The model with `tensors` added to its graph outputs (nothing else changes: same tensors, same
    buffers), so that XNNPACK, which keeps no intermediate tensor, hands them back."""
    from tensorflow.lite.python import schema_py_generated as schema

    from edgekit.quantize.tflite_compact import pack_model

    unpacked = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = unpacked.subgraphs[0]
    outputs = [int(index) for index in graph.outputs]
    graph.outputs = outputs + [index for index in dict.fromkeys(tensors) if index not in outputs]
    return pack_model(unpacked, len(model))


def bias_views(data: bytearray, tensors: list[int]) -> list[np.ndarray]:
    """Writable int32 views of the listed constant tensors' data inside the flatbuffer `data`."""
    model, graph, _ = flatbuffer_graph(data)
    return [model.Buffers(graph.Tensors(index).Buffer()).DataAsNumpy().view(np.int32) for index in tensors]


def runtime_interpreter(model: bytes, threads: int | None = None):
    """An interpreter on the runtime's default kernels (XNNPACK on a CPU): what the user's runs use."""
    from edgekit.runtimes.tflite import find_interpreter

    interpreter = find_interpreter()[1](model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def reference_interpreter(model: bytes):
    from edgekit.runtimes.tflite import INTERPRETERS, find_interpreter

    package, interpreter_class, _ = find_interpreter()
    options: dict[str, object] = {"experimental_preserve_all_tensors": True}
    if package != "tensorflow":
        import importlib

        module = importlib.import_module(dict(INTERPRETERS)[package])
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = interpreter_class(model_content=model, **options)
    interpreter.allocate_tensors()
    return interpreter


def flatbuffer_graph(data: bytearray) -> tuple[object, object, dict[int, int]]:
    """The flatbuffer's model and first subgraph (zero-copy views into `data`), and how many tensors
    use each buffer (a buffer shared by several tensors must not be edited for one of them)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    users: dict[int, int] = {}
    for i in range(graph.TensorsLength()):
        users[graph.Tensors(i).Buffer()] = users.get(graph.Tensors(i).Buffer(), 0) + 1
    return model, graph, users


def _targets(quant, reference, data: bytearray, samples: list[np.ndarray]) -> list[_Target]:
    """The int8 layers with an int32 bias of their own, in execution order, matched by output name."""
    model, graph, buffer_users = flatbuffer_graph(data)
    tensors = {t["index"]: t for t in quant.get_tensor_details()}
    float_index = {t["name"]: t["index"] for t in reference.get_tensor_details()}
    keys = _prefix_keys(quant, tensors, model, graph, samples)
    targets = []
    for position, op in enumerate(quant._get_ops_details()):
        inputs = [int(i) for i in op["inputs"]]
        if op["op_name"] not in WEIGHTED_OPS or len(inputs) < 3 or inputs[2] < 0:
            continue
        bias, output = tensors[inputs[2]], tensors[int(op["outputs"][0])]
        buffer = graph.Tensors(inputs[2]).Buffer()
        raw = model.Buffers(buffer).DataAsNumpy()
        if bias["dtype"] != np.int32 or output["name"] not in float_index or buffer_users[buffer] != 1:
            continue
        if not isinstance(raw, np.ndarray) or raw.size != 4 * int(np.prod(bias["shape"])):
            continue  # data kept outside the flatbuffer (models over 2 GB)
        scale, zero_point = output["quantization"]
        info = np.iinfo(output["dtype"])
        kept = ((info.min - zero_point + 1) * scale, (info.max - zero_point - 1) * scale)
        bias_scale = np.asarray(bias["quantization_parameters"]["scales"], np.float64)
        float_tensor = float_index[output["name"]]
        ids = (output["index"], float_tensor, inputs[2])
        targets.append(_Target(ids, raw.view(np.int32), bias_scale, kept, keys[position]))
    return targets


def _prefix_keys(quant, tensors: dict, model, graph, samples: list[np.ndarray]) -> list[str]:
    """For each op in execution order, a digest of the samples and of every op up to and including it:
    kind, tensor names, shapes, types, quantization and constant data (biases not yet corrected).
    A layer's correction depends on nothing else, so an equal digest means an equal correction (op
    options are not read: both models come from one calibrated converter model, where an op's name
    and tensors fix them)."""
    import hashlib

    digest = hashlib.sha256()
    for sample in samples:
        digest.update(np.ascontiguousarray(sample).tobytes())
    keys = []
    for op in quant._get_ops_details():
        digest.update(op["op_name"].encode())
        for index in [int(i) for i in op["inputs"]] + [int(i) for i in op["outputs"]]:
            if index < 0:
                digest.update(b"-")
                continue
            detail = tensors[index]
            quantization = detail["quantization_parameters"]
            digest.update(f"{detail['name']}|{detail['dtype']}|{list(detail['shape'])}".encode())
            digest.update(np.asarray(quantization["scales"], np.float64).tobytes())
            digest.update(np.asarray(quantization["zero_points"], np.int64).tobytes())
            raw = model.Buffers(graph.Tensors(index).Buffer()).DataAsNumpy()
            if isinstance(raw, np.ndarray):
                digest.update(raw.tobytes())
        keys.append(digest.copy().hexdigest())
    return keys


def collect_tensors(interpreter, tensors: list[int], samples: list[np.ndarray], store: type) -> list[list[np.ndarray]]:
    """The listed tensors (dequantized) for every sample."""
    from edgekit.artifact import TensorSpec
    from edgekit.runtimes import dequantize, quantize

    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    spec = TensorSpec(detail["name"], list(detail["shape"]), scale=scale or None, zero_point=zero_point)
    infos = {t["index"]: t for t in interpreter.get_tensor_details() if t["index"] in set(tensors)}
    results = []
    for sample in samples:
        value = quantize(sample, spec, np.dtype(detail["dtype"])) if spec.scale else sample.astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        outputs = []
        for index in tensors:
            raw, (s, z) = interpreter.get_tensor(index), infos[index]["quantization"]
            value = dequantize(raw, TensorSpec("", [], scale=s, zero_point=z)) if s else raw.astype(np.float32)
            outputs.append(value.astype(store))
        results.append(outputs)
    return results


def runtime_tensors(
    model: bytes, tensors: list[int], samples: list[np.ndarray], store: type, threads: int | None = None
) -> list[list[np.ndarray]]:
    """The listed tensors (dequantized) for every sample, run on the runtime's default kernels with the
    tensors made graph outputs (XNNPACK keeps no intermediate tensor)."""
    return collect_tensors(runtime_interpreter(with_outputs(model, tensors), threads), tensors, samples, store)


def collect_outputs(model: bytes, samples: list[np.ndarray], threads: int | None = None) -> list[np.ndarray]:
    """Output 0 of `model` (dequantized, float64) for every sample, run with the runtime's default
    kernels (XNNPACK on a CPU), as the user's runs are."""
    interpreter = runtime_interpreter(model, threads)
    output = int(interpreter.get_output_details()[0]["index"])
    return [values[0] for values in collect_tensors(interpreter, [output], samples, np.float64)]


def output_error(model: bytes, samples: list[np.ndarray], reference: list[np.ndarray], threads: int | None) -> float:
    """Mean squared difference of `model`'s output from `reference` (the float model's), on `samples`."""
    outputs = collect_outputs(model, samples, threads)
    return float(np.mean([np.mean((o - r) ** 2) for o, r in zip(outputs, reference)]))
