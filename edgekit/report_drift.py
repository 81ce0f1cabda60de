"""Rendering of drift: the validation report and the quantize report (its budget rounds and the layers
ranked by their effect) as rich tables; JSON is edgekit.report.print_json."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from edgekit.report import _err, _out, _pct, _styled, human_bytes

if TYPE_CHECKING:
    from edgekit.quantize.api import QuantizeReport, Round
    from edgekit.quantize.common import LayerDrift
    from edgekit.validate import ValidationReport


def agreement_with_interval(report: ValidationReport) -> str:
    """'93.0% (95% interval 88.6-95.8% on 200 images)': what the image count allows one to conclude."""
    low, high = report.top1_interval
    return f"{_pct(report.top1_agreement)} (95% interval {low:.1%}-{high:.1%} on {report.images} images)"


def gap_with_interval(report: ValidationReport) -> str:
    """The top-class probability gap on the confident images, with its 95% interval where it has one."""
    interval = report.confident_probability_gap_interval
    spread = f", 95% interval {interval[0]:.3f}-{interval[1]:.3f}" if interval else ""
    return f"{report.confident_probability_gap:.3f} (mean on {report.confident_images} confident images{spread})"


def validation_table(report: ValidationReport, title: str) -> Table:
    """The drift measures of one validation."""
    from edgekit.validate import NEAR_TIE_MARGIN

    table = Table(title=title, show_header=False)
    table.add_row(
        "images", f"{report.images}" + (f" ({report.skipped_files} unreadable skipped)" if report.skipped_files else "")
    )
    table.add_row("top-1 agreement", agreement_with_interval(report))
    if report.top1_changed:
        table.add_row(
            "top-1 changes",
            f"{report.top1_changed}, of which {report.changed_on_near_ties} where the reference's top two "
            f"lie within {NEAR_TIE_MARGIN:g}",
        )
    table.add_row("top-5 agreement", _pct(report.top5_agreement))
    table.add_row("confident agreement", f"{_pct(report.confident_agreement)} on {report.confident_images} images")
    table.add_row("mean KL", f"{report.mean_kl:.4f}")
    if report.confident_probability_gap is not None:
        table.add_row("top-class probability gap", gap_with_interval(report))
    table.add_row("max |Δ| of outputs", f"{report.max_abs_diff:.4g}")
    meanings = getattr(report, "output_meaning", {})
    if meanings:
        table.add_row("outputs read as", ", ".join(f"{role}: {text}" for role, text in meanings.items()))
    if getattr(report, "candidate_runtime", None):
        table.add_row("candidate ran on", report.candidate_runtime)
    side = getattr(report, "host_vs_device", None)
    if side:
        table.add_row(
            "this host vs the board",
            f"{side['top1_changed']} of {side['images']} images change top-1; max |Δ| {side['max_abs_diff']:.3g}, "
            f"mean KL {side['mean_kl']:.4f} (candidate on {side['host']})",
        )
    if report.reference_accuracy is not None:
        table.add_row(
            "accuracy",
            f"reference {_pct(report.reference_accuracy)}, candidate "
            f"{_pct(report.candidate_accuracy)} (drop {report.accuracy_drop:.2f} points)",
        )
    for failure in report.failures():
        table.add_row(Text("over budget", style="red"), failure)
    return table


def print_validation(report: ValidationReport, title: str) -> None:
    """Validation report: measures, the classes that drift most, the worst images."""
    _out.print(validation_table(report, title))
    classes = Table(title="classes with the lowest agreement (by reference top-1)")
    for column in ("class", "label", "images", "agreement"):
        classes.add_column(column)
    for row in report.per_class[:5]:
        classes.add_row(str(row["class"]), row["label"], str(row["images"]), _pct(row["agreement"]))
    _out.print(classes)
    worst = Table(title="worst images (highest KL)")
    for column in ("image", "KL", "reference top-1", "candidate top-1"):
        worst.add_column(column)
    for item in report.worst:
        worst.add_row(item.image, f"{item.kl:.3f}", str(item.reference_top1), str(item.candidate_top1))
    _out.print(worst)


def print_quantize(report: QuantizeReport) -> None:
    """Quantization result: float vs quantized side by side, the budget rounds, the guilty layers."""
    table = Table(title=f"quantize {report.source.name} -> {report.output or '(not written)'}")
    for column in ("model", "size", "p50 latency", "top-1 agreement", "confident agreement", "mean KL"):
        table.add_column(column)
    val = report.validation
    table.add_row("float", human_bytes(report.float_bytes), f"{report.float_ms:.2f} ms", "", "", "")
    table.add_row(
        f"{report.scheme} ({report.target})",
        f"{human_bytes(report.quant_bytes)} ({report.quant_bytes / report.float_bytes:.0%})",
        f"{report.quant_ms:.2f} ms ({report.float_ms / report.quant_ms:.2f}x)",
        _pct(val.top1_agreement),
        f"{_pct(val.confident_agreement)} of {val.confident_images}",
        f"{val.mean_kl:.4f}",
    )
    _out.print(table)
    _out.print(f"top-1 agreement {agreement_with_interval(val)}")
    if val.confident_probability_gap is not None:
        _out.print(f"top-class probability gap {gap_with_interval(val)}")
    if val.candidate_runtime:
        _out.print(f"drift measured with the candidate on {val.candidate_runtime}; latencies are this host's")
    if len(report.rounds) > 1:
        _out.print(rounds_table(report.rounds, report.chosen))
    if report.layers:
        _out.print(layer_table(report.layers[:8]))
    for warning in report.warnings:
        _err.print(_styled("warning:", "yellow", warning))
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items() if k != "preset_reason")
    _out.print(f"settings: {settings}")
    if "preset_reason" in report.settings:
        _out.print(f"why: {report.settings['preset_reason']}")


def rounds_table(rounds: list[Round], chosen: int) -> Table:
    """The drift budget's rounds: which source-model layers each one made float, and what it gave
    (confident agreement is in --json; at 80 columns the layer names come first)."""
    count = len(rounds[chosen].float_layers)
    caption = f"chosen: round {chosen + 1} of {len(rounds)}, {count} float layer{'' if count == 1 else 's'}"
    table = Table(title="drift budget: layers kept in float", caption=caption)
    timed = any(r.speedup is not None for r in rounds)
    table.add_column("float")
    table.add_column("made float here", no_wrap=True)  # source layers, whole: --keep-float takes them
    for column in ("top-1", "mean KL", "budget"):
        table.add_column(column)
    if timed:
        table.add_column("vs float")
    for index, r in enumerate(rounds):
        before = rounds[index - 1].float_sources if index else []
        added = "\n".join(name for name in r.float_sources if name not in before) or "-"
        budget = ("met" if r.passed else "not met") if r.kept else "under speed floor"
        row = [str(len(r.float_layers)), added, _pct(r.top1_agreement), f"{r.mean_kl:.4f}", budget]
        table.add_row(*row, *([f"{r.speedup:.2f}x" if r.speedup else ""] if timed else []))
    return table


def layer_table(ranked: list[LayerDrift]) -> Table:
    """The ranked layers by their source-model names, whole (they are what --keep-float takes)."""
    from edgekit.convert.onnx_names import bare_name

    table = Table(
        title="layers that lose the most to quantization (source-model names)",
        caption="--keep-float LAYER keeps one in float",
    )
    table.add_column("layer", no_wrap=True)
    table.add_column("op", no_wrap=True)
    for column in ("SQNR (dB)", "error gone if float"):
        table.add_column(column)
    for layer in ranked:
        sqnr = "n/a" if layer.sqnr_db is None else f"{layer.sqnr_db:.1f}"
        effect = f"{layer.score:.3g}" if layer.effect_measured else "not measured"
        table.add_row(bare_name(layer.source_name), layer.op_type, sqnr, effect)
    return table
