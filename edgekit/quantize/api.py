"""`quantize_model`: float reference -> quantize -> validate on held-out images -> keep the most
damaging layers in float while a drift budget is broken -> write with a sidecar."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import schema
from edgekit.artifact import ModelArtifact, Preprocessing, lineage_entry, read_artifact
from edgekit.convert.api import ConvertOptions, convert_model, embed_onnx_metadata, read_labels
from edgekit.convert.onnx_names import bare_name
from edgekit.data import DataSource
from edgekit.errors import BadInput, UnsupportedRoute, did_you_mean
from edgekit.formats import SUFFIX, Family, Format
from edgekit.fsutil import atomic_path, refuse_to_replace
from edgekit.loaders import LoadOptions
from edgekit.output_meaning import with_meaning
from edgekit.preprocess import PreprocessOverrides, resolve_preprocessing
from edgekit.quantize.backends import BACKENDS, Backend
from edgekit.quantize.common import LayerDrift
from edgekit.quantize.cpu import host_preset
from edgekit.quantize.settings import QuantizeSettings
from edgekit.runtimes import Runner, open_runner
from edgekit.samples import write_crops
from edgekit.timing import alternating_p50
from edgekit.validate import Limits, ValidationReport, compare_on_data

if TYPE_CHECKING:
    from edgekit.board import Board
    from edgekit.jsontypes import Json

Progress = Callable[[str], None]
# Fewest calibration images each activation-range method can work from: min-max needs a handful;
# entropy and percentile build histograms whose tails are noise on fewer; bias correction uses 32.
MIN_CALIBRATION = {"minmax": 8, "entropy": 32, "percentile": 32}
DYNAMIC_CNN_WARNING = (
    "dynamic quantization of a CNN was measured slower than fp32 in onnxruntime (20-59 ms vs "
    "4.8 ms) and far less accurate (56-62% agreement); prefer --scheme int8 with --calib"
)


@dataclasses.dataclass
class QuantizeOptions(QuantizeSettings):
    """QuantizeSettings (the typed schema shared with the CLI and recipes) plus what this run reads
    and writes."""

    output: Path | None = None
    calib: Path | None = None
    val: Path | None = None  # default: crops of the bundled photos (disjoint from any calibration folder)
    val_count: int = 200
    budget: Limits | None = None  # the parsed max_drift (set it directly to pass Limits from code)
    load: LoadOptions = dataclasses.field(default_factory=LoadOptions)
    preprocess: PreprocessOverrides = dataclasses.field(default_factory=PreprocessOverrides)
    labels_file: Path | None = None
    force: bool = False  # replace an existing output

    @property
    def target(self) -> Format | None:
        """The output format asked for (None: the source family's default)."""
        return Format(self.format) if self.format else None

    def __post_init__(self) -> None:
        problems = schema.problems(QuantizeSettings, schema.shared_values(self, QuantizeSettings))
        if problems:
            raise BadInput(problems[0][1], fix="see `edgekit quantize --help`")
        if self.budget is None and self.max_drift is not None:
            self.budget = Limits.parse(str(self.max_drift))
        if self.scheme == "int8" and self.calib is None:
            raise BadInput(
                "int8 quantization needs calibration images",
                fix="pass --calib DIR (photos like the ones the model will see; 100-500 is plenty)",
            )
        if self.calib is not None and not self.calib.exists():
            raise BadInput(f"calibration source {self.calib} does not exist", fix="give an image folder, video or .npy")
        if self.val is not None and not self.val.exists():
            raise BadInput(f"validation source {self.val} does not exist", fix="give an image folder, video or .npy")


@dataclasses.dataclass
class Round:
    """One quantize-and-validate attempt of the drift-budget loop."""

    float_layers: list[str]
    top1_agreement: float
    confident_agreement: float | None
    mean_kl: float
    passed: bool
    speedup: float | None = None  # vs the float model, timed when a speed floor is set
    kept: bool = True  # False: under the speed floor, so the loop stopped before it
    float_sources: list[str] = dataclasses.field(default_factory=list)  # float_layers as source-model layers


@dataclasses.dataclass
class QuantizeReport:
    """The quantized model, its drift, size and speed against the float model, and how it got there."""

    source: Path
    output: Path | None
    target: str
    scheme: str
    settings: Json
    float_bytes: int
    quant_bytes: int
    float_ms: float
    quant_ms: float
    validation: ValidationReport
    rounds: list[Round]
    layers: list[LayerDrift]
    warnings: list[str]
    chosen: int = 0  # the round whose model this is: the first within budget, else the closest

    @property
    def passed(self) -> bool:
        """True when the reported round met the budget (or no budget was set)."""
        return self.validation.passed

    @property
    def float_layers(self) -> list[str]:
        """The layers kept in float in the model reported."""
        return self.rounds[self.chosen].float_layers if self.rounds else []

    def to_dict(self) -> Json:
        """JSON form."""
        data = dataclasses.asdict(self)
        data.update(
            source=str(self.source),
            output=str(self.output) if self.output else None,
            passed=self.passed,
            validation=self.validation.to_dict(),
            speedup=self.float_ms / self.quant_ms,
            size_ratio=self.quant_bytes / self.float_bytes,
            slower_than_float=self.quant_ms >= self.float_ms,
        )
        return data


def default_target(fmt: Format) -> Format:
    """Where a source is quantized unless --format says otherwise."""
    if fmt is Format.TFLITE:
        raise UnsupportedRoute(
            "a .tflite model cannot be quantized again",
            fix="quantize the source model (Keras, PyTorch or ONNX) with --format tflite",
        )
    return Format.TFLITE if fmt.family is Family.KERAS else Format.ONNX


def default_output(source: Path, scheme: str, target: Format, io_dtype: str = "float") -> Path:
    """MODEL.<scheme>.<suffix>, e.g. net.int8.onnx; integer IO is in the name (net.int8-uint8io.tflite),
    so that an Edge TPU build does not take the name of the float-IO one."""
    io = "" if io_dtype == "float" else f"-{io_dtype}io"
    return source.with_name(f"{source.stem}.{scheme}{io}{SUFFIX[target]}")


def quantize_model(
    source: Path, options: QuantizeOptions, progress: Progress = lambda _: None, board: Board | None = None
) -> QuantizeReport:
    """Quantize `source`; write the result only if it meets the drift budget (when one is set).
    With `board`, each candidate's drift is measured there, on the device's own kernels."""
    artifact = read_artifact(source)
    default = default_target(artifact.format)  # also refuses .tflite sources, whatever --format says
    target = options.target or default
    prep = resolve_preprocessing(artifact.preprocessing, options.preprocess)
    if prep is None:
        raise BadInput(f"{source} has no stored preprocessing", fix="pass --preset imagenet|mobilenet|unit")
    output = options.output or default_output(source, options.scheme, target, options.io_dtype)
    refuse_to_replace(output, options.force)
    warnings = [DYNAMIC_CNN_WARNING] if options.scheme == "dynamic" else []
    used = _check_calibration_size(options) if options.scheme == "int8" else None
    with tempfile.TemporaryDirectory(prefix="edgekit-quantize-") as tmp:
        work = Path(tmp)
        progress(f"making the float {target.value} reference (checked against {source.name})")
        reference = _float_reference(source, artifact.format, target, work, options)
        backend: Backend = BACKENDS[target](source, reference, work, options, prep, progress)
        backend.calibration_used = used
        keep_float = _keep_float_nodes(options.keep_float, backend)
        val = _validation_source(options, work, read_labels(options.labels_file) or artifact.labels)
        report, candidate = _budget_loop(source, backend, reference, val, prep, options, keep_float, progress, board)
        first = report.rounds[0]
        if options.min_speedup is not None and first.speedup is not None and first.speedup < options.min_speedup:
            warnings.append(
                f"with every layer quantized the model runs at {first.speedup:.2f}x the float model's speed, "
                f"under --min-speedup {options.min_speedup:g}: no layer could be kept in float"
            )
        if not report.passed and not backend.can_keep_float():
            warnings.append(
                f"with --io-dtype {options.io_dtype} every op runs in int8, so no layer could be kept in float "
                "to meet the budget; more or closer calibration images, or float IO, may"
            )
        slower = _slower_than_float(report, backend.can_keep_float())
        report.warnings = warnings + ([slower] if slower else []) + backend.warnings(candidate)
        if report.passed:
            with atomic_path(output) as partial:
                shutil.copyfile(candidate, partial)
                _write_sidecar(output, partial, target, reference, source, options, report)
            report.output = output
        return report


def _keep_float_nodes(names: list[str], backend: Backend) -> list[str]:
    """The nodes that --keep-float names (node or source-layer names); BadInput for a name that matches
    nothing (it would be ignored silently) or for a model that cannot keep layers in float."""
    if not names:
        return []
    if not backend.can_keep_float():
        raise BadInput(
            f"--keep-float needs a float-IO model: with --io-dtype {backend.options.io_dtype} every op runs in int8",
            fix="drop --keep-float, or leave --io-dtype at float",
        )
    nodes, unknown = backend.nodes_named(names)
    if unknown:
        sources = backend.layer_sources()
        known = sorted(set(sources) | {bare_name(source) for source in sources.values()})
        raise BadInput(
            f"--keep-float {unknown[0]!r} names no layer of this model",
            fix=f"{did_you_mean(unknown[0], known)}use a layer or node name from the quantize report's layer "
            "table (run it with --max-drift)",
        )
    return nodes


def _check_calibration_size(options: QuantizeOptions) -> tuple[int, int]:
    """The usable and skipped calibration images; BadInput when fewer are usable than the method needs."""
    assert options.calib is not None  # QuantizeOptions refuses int8 without it
    needed = MIN_CALIBRATION.get(options.method, 8)
    source = DataSource(options.calib, count=options.calib_count, seed=options.seed)
    usable = sum(1 for _ in source)
    if usable < needed:
        skipped = f" ({source.stats.skipped} unreadable files skipped)" if source.stats.skipped else ""
        raise BadInput(
            f"calibration source {options.calib} has {usable} usable images{skipped}; "
            f"--calibration {options.method} needs at least {needed}",
            fix=f"add images (100-500 like the ones the model will see), or raise --calib-count to {needed} or more",
        )
    return usable, source.stats.skipped


def _slower_than_float(report: QuantizeReport, can_keep_float: bool) -> str | None:
    """A plain statement, with likely causes and what to do, when the quantized model is not faster
    than the float one on this host (both timed in turns on the same input); --keep-float is only
    suggested where layers can stay float."""
    if report.quant_ms < report.float_ms:
        return None
    speed = report.float_ms / report.quant_ms
    cpu = report.settings.get("cpu_preset") or host_preset().name
    remedies = "--keep-float on the slow layers, " if can_keep_float else ""
    return (
        f"the {report.scheme} model runs at {speed:.2f}x the float model's speed on this host ({cpu}): it is "
        "SLOWER, not faster. Likely causes: depthwise, squeeze-excite, hard-swish or attention layers whose "
        "int8 kernels are slow here, or a CPU without VNNI/dot-product int8 instructions. Try "
        f"{remedies}--cpu for the device it will run on, or keep the float model"
    )


def _float_reference(source: Path, fmt: Format, target: Format, work: Path, options: QuantizeOptions) -> Path:
    if fmt is target:
        return source
    reference = work / f"float{SUFFIX[target]}"
    convert_model(
        source,
        ConvertOptions(
            to=target,
            output=reference,
            load=options.load,
            preprocess=options.preprocess,
            labels_file=options.labels_file,
        ),
    )
    return reference


def _validation_source(options: QuantizeOptions, work: Path, labels: list[str] | None) -> DataSource:
    if options.val is not None:
        return DataSource(options.val, count=options.val_count, seed=options.seed + 1, labels=labels)
    folder = work / "val"
    write_crops(folder, options.val_count, seed=options.seed + 1000)  # never the calibration crops
    return DataSource(folder, labels=labels)


def _budget_loop(
    source: Path,
    backend: Backend,
    reference: Path,
    val: DataSource,
    prep: Preprocessing,
    options: QuantizeOptions,
    keep_float: list[str],
    progress: Progress,
    board: Board | None = None,
) -> tuple[QuantizeReport, Path]:
    """Quantize and validate (on `board` when given) until the budget holds, the cap is hit, or keeping
    more layers in float would fall under the speed floor, with `keep_float` (nodes) in float from the
    start; the report (output None) and its candidate."""
    float_layers = list(keep_float)
    rounds: list[Round] = []
    layers: list[LayerDrift] = []
    chosen: tuple[int, Path, ValidationReport] | None = None
    ref_artifact = read_artifact(reference)
    timing_feed = _timing_feed(val, prep)
    with open_runner(ref_artifact, threads=options.threads, load=options.load, spin=False) as ref:
        while True:
            candidate, validation, this = _round(backend, ref, float_layers, val, prep, options, progress, board)
            rounds.append(this)
            if options.min_speedup is not None:
                progress("timing against the float model (speed floor)")
                float_ms, quant_ms = alternating_p50(
                    [ref_artifact, ModelArtifact(candidate, backend.format)], timing_feed, rounds=3, runs=30,
                    threads=options.threads,
                )  # fmt: skip
                this.speedup = float_ms / quant_ms
                if this.speedup < options.min_speedup and chosen is not None:
                    this.kept = False
                    break
            if chosen is None or _closer(validation, chosen[2]):
                chosen = (len(rounds) - 1, candidate, validation)
            if validation.passed or options.scheme != "int8" or len(float_layers) >= options.max_float_layers:
                break
            if not backend.can_keep_float():
                break
            if not layers:
                progress("ranking layers by quantization error")
                layers = backend.layer_drift()
            more = _more_float_layers(layers, float_layers, options.max_float_layers)
            if not more:
                break
            float_layers += more
    index, candidate, validation = chosen
    if any(r.float_layers for r in rounds):
        sources = backend.layer_sources()
        for r in rounds:
            r.float_sources = list(dict.fromkeys(bare_name(sources.get(n, n)) for n in r.float_layers))
    backend.finish(candidate)
    progress("timing float and quantized models in turns")
    report = _chosen_report(source, backend, reference, candidate, validation, rounds, layers, timing_feed, options)
    report.chosen = index
    return report, candidate


def _chosen_report(
    source: Path,
    backend: Backend,
    reference: Path,
    candidate: Path,
    validation: ValidationReport,
    rounds: list[Round],
    layers: list[LayerDrift],
    timing_feed: Callable[[Any], Any],
    options: QuantizeOptions,
) -> QuantizeReport:
    """The report of the chosen round, its latency timed against the float model in turns."""
    float_ms, quant_ms = alternating_p50(
        [read_artifact(reference), ModelArtifact(candidate, backend.format)], timing_feed, threads=options.threads
    )
    return QuantizeReport(
        source=source,
        output=None,
        target=backend.format.value,
        scheme=options.scheme,
        settings=backend.settings(candidate),
        float_bytes=reference.stat().st_size,
        quant_bytes=candidate.stat().st_size,
        float_ms=float_ms,
        quant_ms=quant_ms,
        validation=validation,
        rounds=rounds,
        layers=layers[:12],
        warnings=[],
    )


def _round(
    backend: Backend,
    reference: Runner,
    float_layers: list[str],
    val: DataSource,
    prep: Preprocessing,
    options: QuantizeOptions,
    progress: Progress,
    board: Board | None = None,
) -> tuple[Path, ValidationReport, Round]:
    """One quantization with `float_layers` kept in float, validated against the float model (the
    candidate run on `board` when given)."""
    progress(f"quantizing ({options.scheme}, {len(float_layers)} layers kept in float)")
    candidate = backend.quantize(float_layers)
    artifact = ModelArtifact(candidate, backend.format)
    with open_runner(artifact, threads=options.threads, spin=False, exact_int8=backend.exact_int8) as cand:
        judged: Runner = cand
        if board is not None:
            from edgekit.board import BoardRunner

            tensors = [sample.to_tensor(prep, cand.inputs()[0]) for sample in val]
            progress(f"running the candidate on {board.describe()} ({len(tensors)} images)")
            judged = BoardRunner.beside(cand, board, tensors, options.threads)
        progress(f"validating against the float model on {val.path}")
        validation = compare_on_data(reference, judged, prep, val)
        if board is not None:
            validation.candidate_runtime = judged.describe()
    validation.limits = options.budget or Limits()
    this = Round(
        list(float_layers),
        validation.top1_agreement,
        validation.confident_agreement,
        validation.mean_kl,
        validation.passed,
    )
    return candidate, validation, this


def _more_float_layers(ranked: list[LayerDrift], float_layers: list[str], cap: int) -> list[str]:
    """The next most damaging layers to keep in float: as many as are float already (1, 2, 4, 8, ...),
    up to the cap; none when every ranked layer is float."""
    remaining = [layer.node for layer in ranked if layer.node not in float_layers]
    step = max(1, len(float_layers))
    return remaining[: min(step, cap - len(float_layers))]


def _closer(new: ValidationReport, best: ValidationReport) -> bool:
    """Is `new` a better round than `best`: within budget, or else higher top-1 agreement? (More float
    layers do not always help: on low-confidence images agreement can drop again.)"""
    return (new.passed, new.top1_agreement, -new.mean_kl) > (best.passed, best.top1_agreement, -best.mean_kl)


def _timing_feed(val: DataSource, prep: Preprocessing) -> Callable[[Any], Any]:
    """One validation image as each runner's input, for timing."""
    sample = next(iter(val))
    return lambda runner: sample.to_tensor(prep, runner.inputs()[0])


def _write_sidecar(
    output: Path,
    partial: Path,
    target: Format,
    reference: Path,
    source: Path,
    options: QuantizeOptions,
    report: QuantizeReport,
) -> None:
    ref = read_artifact(reference)
    result = ModelArtifact(
        path=output,
        format=target,
        preprocessing=ref.preprocessing,
        labels=ref.labels,
        precision=options.scheme,
        lineage=list(ref.lineage),
    )
    with open_runner(ref) as ref_runner, open_runner(ModelArtifact(partial, target)) as runner:
        result.inputs, result.outputs = runner.inputs(), with_meaning(runner.outputs(), ref_runner, runner)
    for spec, stored in zip(result.inputs, ref.inputs):
        spec.layout = spec.layout or stored.layout
    summary = {
        "top1_agreement": report.validation.top1_agreement,
        "mean_kl": report.validation.mean_kl,
        "float_layers": report.float_layers,
        **report.settings,
    }
    result.lineage.append(lineage_entry("quantize", source, {"scheme": options.scheme, **summary}))
    if target is Format.ONNX:
        embed_onnx_metadata(partial, result)
    result.save()
