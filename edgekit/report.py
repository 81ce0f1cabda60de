"""Rendering only: rich tables for people, JSON for machines. Progress goes to stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

_out = Console(soft_wrap=True)
_err = Console(stderr=True)


def print_json(data: Any) -> None:
    """Print JSON to stdout."""
    print(json.dumps(data, indent=2, default=str))


def progress_printer(quiet: bool = False) -> Callable[[str], None]:
    """A callback that prints each long step to stderr (silent with --json)."""
    return (lambda _: None) if quiet else (lambda message: _err.print(f"[dim]…[/dim] {message}"))


def human_bytes(count: float) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    return f"{count:.1f} GB"


def _count(value: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 1e9:.2f} G" if value >= 1e9 else f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value:,}"


def _tensor_row(spec: Any) -> tuple[str, ...]:
    quant = f"scale {spec.scale:.4g}, zp {spec.zero_point}" if spec.scale else ""
    shape = "x".join("?" if d is None else str(d) for d in spec.shape)
    return spec.name, shape, spec.dtype, spec.layout or "", quant


def print_inspect(report: Any) -> None:
    """The inspect report as tables."""
    summary = Table(title=f"{report.path}", show_header=False)
    summary.add_row("format", report.format)
    summary.add_row("size", human_bytes(report.size_bytes))
    summary.add_row("runtime", report.runtime)
    summary.add_row("parameters", _count(report.facts.params))
    summary.add_row("MACs", _count(report.facts.macs))
    shares = report.precision_shares()
    summary.add_row("weights", ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) or "none found")
    prep = report.artifact.preprocessing
    summary.add_row(
        "preprocessing",
        f"{prep.preset or 'custom'}: mean {prep.mean}, std {prep.std}, {prep.resize}"
        if prep
        else "not recorded (pass --preset when converting)",
    )
    summary.add_row("labels", f"{len(report.artifact.labels)} classes" if report.artifact.labels else "none")
    for entry in report.artifact.lineage:
        summary.add_row("lineage", f"{entry.get('step')} from {entry.get('source')} ({entry.get('created', '')})")
    if report.facts.note:
        summary.add_row("note", report.facts.note)
    _out.print(summary)
    tensors = Table(title="tensors")
    for column in ("io", "name", "shape", "dtype", "layout", "quantization"):
        tensors.add_column(column)
    for kind, specs in (("input", report.inputs), ("output", report.outputs)):
        for spec in specs:
            tensors.add_row(kind, *_tensor_row(spec))
    _out.print(tensors)
    if report.facts.ops:
        ops = Table(title="operators")
        ops.add_column("op")
        ops.add_column("count", justify="right")
        for name, count in report.facts.ops.most_common():
            ops.add_row(name, str(count))
        _out.print(ops)


def print_convert(report: Any) -> None:
    """The conversion report and its parity check."""
    table = Table(title=f"convert {report.source.name} -> {report.output}")
    for column in ("output", "max |Δ|", "mean |Δ|", "top-1 agreement", "limit"):
        table.add_column(column)
    parity = report.parity
    for out in parity.outputs:
        table.add_row(
            out.name,
            f"{out.max_abs_diff:.3g}",
            f"{out.mean_abs_diff:.3g}",
            f"{out.top1_agreement:.1%}",
            f"|Δ| ≤ {parity.tolerance:g}, agreement ≥ {parity.min_agreement:.0%}",
        )
    _out.print(table)
    notes = ", ".join(f"{k}: {v}" for k, v in report.notes.items())
    _out.print(
        f"[green]✓[/green] {report.output} ({human_bytes(report.output_bytes)}, from "
        f"{human_bytes(report.source_bytes)} {report.source_format}) in {report.seconds:.1f}s; "
        f"parity on {parity.images} real-photo crops: {parity.source_runtime} vs {parity.result_runtime}; {notes}"
    )


def print_classify(runtime: str, results: list[Any]) -> None:
    """Top-k predictions per image."""
    table = Table(title=f"classify ({runtime})")
    for column in ("image", "rank", "class", "label", "probability"):
        table.add_column(column)
    for result in results:
        for rank, prediction in enumerate(result.top, start=1):
            table.add_row(
                result.image if rank == 1 else "",
                str(rank),
                str(prediction.index),
                prediction.label or "",
                f"{prediction.probability:.3f}",
            )
    _out.print(table)
