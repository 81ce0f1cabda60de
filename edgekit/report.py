"""Rendering only: rich tables for people, JSON for machines. Progress goes to stderr."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from edgekit.artifact import TensorSpec
    from edgekit.bench import BenchResult
    from edgekit.camera.loop import LoopSummary
    from edgekit.classify import ImageResult
    from edgekit.convert.api import ConvertReport
    from edgekit.devices import DeviceProfile
    from edgekit.edgetpu import EdgeTpuCheck
    from edgekit.inspectors import InspectReport
    from edgekit.jsontypes import Json
    from edgekit.prune import PruneReport
    from edgekit.recipes.runner import RunResult


class _TableConsole(Console):
    """A console whose tables wrap long cells instead of cutting them to 'dog_br…': at 80 columns and
    when piped (rich then assumes 80) a model or layer name is still whole, over two lines."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print, with every table column set to fold rather than ellipsize."""
        for item in objects:
            if isinstance(item, Table):
                for column in item.columns:
                    column.overflow = "fold"
        super().print(*objects, **kwargs)


# Markup off: paths, layer names and runtime notes such as "[fallback: ...]" print as they are.
_out = _TableConsole(soft_wrap=True, markup=False)
_err = _TableConsole(stderr=True, markup=False)


def _styled(mark: str, style: str, message: str) -> Text:
    """`mark` in `style`, then the message as plain text."""
    return Text.assemble((mark, style), " ", message)


def print_json(data: object) -> None:
    """Print JSON to stdout."""
    print(json.dumps(data, indent=2, default=str))


def progress_printer(quiet: bool = False) -> Callable[[str], None]:
    """A callback that shows each long step on stderr: a line per stage, and a bar with ETA for a
    counted stage ('bias correction: layer 3 of 50') on a terminal. With --json (`quiet`) only a
    terminal gets the bars (stdout stays JSON); logs and pipes get nothing."""
    if quiet and not _err.is_terminal:
        return lambda _: None
    return _StageProgress(_err, live=_err.is_terminal, lines=not quiet)


class _StageProgress:
    """Stage lines, and for 'WHAT: [layer] N of M' messages a rich progress bar (terminal) or just the
    first and last of the series (logs)."""

    COUNTED = re.compile(r"^(?P<what>.*?):? (?:layer |image |round )?(?P<done>\d+) of (?P<total>\d+)$")

    def __init__(self, console: Console, live: bool, lines: bool) -> None:
        self.console, self.live, self.lines = console, live, lines
        self.bar: Progress | None = None
        self.task: Any = None
        self.what = ""

    def __call__(self, message: str) -> None:
        """Show one progress message."""
        counted = self.COUNTED.match(message)
        if counted is None:
            self._stop()
            if self.lines:
                self.console.print(_styled("…", "dim", message))
            return
        what, done, total = counted["what"], int(counted["done"]), int(counted["total"])
        if not self.live:
            if self.lines and (done in (1, total)):
                self.console.print(_styled("…", "dim", message))
            return
        if self.bar is None or what != self.what:
            self._stop()
            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task, self.what = self.bar.add_task(what, total=total), what
        self.bar.update(self.task, completed=done)
        if done >= total:
            self._stop()
            if self.lines:
                self.console.print(_styled("…", "dim", f"{what}: {total} of {total} done"))

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


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


def _tensor_row(spec: TensorSpec) -> tuple[str, ...]:
    quant = f"scale {spec.scale:.4g}, zp {spec.zero_point}" if spec.scale else ""
    shape = "x".join("?" if d is None else str(d) for d in spec.shape)
    return spec.name, shape, spec.dtype, spec.layout or "", quant


def print_inspect(report: InspectReport) -> None:
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


def print_convert(report: ConvertReport) -> None:
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
        _styled(
            "✓",
            "green",
            f"{report.output} ({human_bytes(report.output_bytes)}, from "
            f"{human_bytes(report.source_bytes)} {report.source_format}) in {report.seconds:.1f}s; "
            f"parity on {parity.images} real-photo crops: {parity.source_runtime} vs {parity.result_runtime}; {notes}",
        )
    )


def print_classify(runtime: str, results: list[ImageResult]) -> None:
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _print_recovery(report: PruneReport) -> None:
    """The recovery epochs on the held-out images, and a warning when those are too few to judge."""
    epochs = Table(title=f"recovery on {report.holdout_images} held-out images (best epoch kept)")
    for column in ("epoch", "loss", "agreement with original", "accuracy"):
        epochs.add_column(column)
    epochs.add_row("pruned", "", _pct(report.agreement_pruned), _pct(report.accuracy_pruned))
    if report.realigned:
        epochs.add_row(report.realigned.split(" (")[0], "", _pct(report.agreement_realigned), "")
    for record in report.history:
        epochs.add_row(str(record.epoch), f"{record.loss:.4f}", _pct(record.agreement), _pct(record.accuracy))
    epochs.add_row("written", "", _pct(report.agreement_recovered), _pct(report.accuracy_recovered))
    if report.accuracy_original is not None:
        epochs.add_row("original", "", "", _pct(report.accuracy_original))
    _out.print(epochs)
    for warning in report.warnings:
        _err.print(_styled("warning:", "yellow", warning))


def print_prune(report: PruneReport) -> None:
    """Pruning result: MACs and params before/after, per-layer channels or sparsity, recovery epochs."""
    structured = report.options.method == "structured"
    table = Table(title=f"prune {report.source.name} -> {report.output.name} ({report.options.method})")
    for column in ("", "before", "after", "ratio"):
        table.add_column(column)
    table.add_row(
        "MACs", _count(report.macs_before), _count(report.macs_after), _ratio(report.macs_after, report.macs_before)
    )
    table.add_row(
        "params",
        _count(report.params_before),
        _count(report.params_after),
        _ratio(report.params_after, report.params_before),
    )
    if report.zipped_before:
        table.add_row(
            "compressed size",
            human_bytes(report.zipped_before),
            human_bytes(report.zipped_after),
            _ratio(report.zipped_after, report.zipped_before),
        )
    _out.print(table)
    layers = Table(title="layers" + ("" if structured else " (share of zero weights)"))
    for column in ("layer", "kind", "channels" if structured else "sparsity"):
        layers.add_column(column)
    changed = [layer for layer in report.layers if layer.channels_after != layer.channels_before or not structured]
    for layer in changed[:12]:
        value = f"{layer.channels_before} → {layer.channels_after}" if structured else f"{layer.sparsity:.0%}"
        layers.add_row(layer.name, layer.kind, value)
    if len(changed) > 12:
        layers.add_row(f"… {len(changed) - 12} more", "", "")
    _out.print(layers)
    if report.history:
        _print_recovery(report)
    elif structured:
        _err.print(
            _styled(
                "warning:",
                "yellow",
                "no recovery: structured pruning without training loses most accuracy; "
                "add --recover distill --data DIR",
            )
        )
    if not structured:
        _out.print(
            "note: zeroed weights make the file compress better, but dense runtimes (onnxruntime, "
            "TFLite) run exactly as fast; use structured pruning for speed."
        )
    _out.print(f"✓ {report.output} in {report.seconds:.1f}s")


def _ratio(after: int | None, before: int | None) -> str:
    return f"{after / before:.0%}" if after is not None and before else ""


def print_recipe_run(result: RunResult) -> None:
    """A recipe run: each step (ran or reused, with times), the artifact table, where the report is."""
    import json

    steps = Table(title=f"recipe {result.recipe.name}: {result.out}")
    for column in ("step", "output", "this run", "when it ran"):
        steps.add_column(column)
    for record in result.steps:
        state = f"reused ({record.elapsed:.1f}s)" if record.reused else f"ran ({record.elapsed:.1f}s)"
        steps.add_row(
            f"{record.index:02d} {record.name}",
            record.output.name if record.output else "",
            state,
            f"{record.seconds:.1f}s",
        )
    _out.print(steps)
    report = json.loads((result.out / "report.json").read_text())
    table = Table(title="models")
    for column in ("model", "format", "precision", "size", "p50 ms", "p99 ms", "top-1 agreement", "mean KL"):
        table.add_column(column)
    for row in report["artifacts"]:
        table.add_row(
            row["name"],
            row["format"],
            row["precision"] or "",
            human_bytes(row["size_bytes"]),
            "" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}",
            "" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}",
            _pct(row["top1_agreement"]),
            "" if row["mean_kl"] is None else f"{row['mean_kl']:.4f}",
        )
    _out.print(table)
    _out.print(f"report: {result.report} (and report.json, report.png)")


def print_loop_summary(summary: LoopSummary) -> None:
    """The camera loop's summary, on stderr so that --headless JSON lines stay clean on stdout."""
    from edgekit.devices import emulated_board

    emulated = emulated_board()
    _err.print(
        ("edgekit run (EMULATED: " + emulated + ")" if emulated else "edgekit run")
        + f": {summary.frames} frames in {summary.seconds:.1f}s = {summary.fps:.1f} FPS "
        f"(stopped by {summary.stopped_by}); {summary.runtime}, {summary.workers} inference worker(s)"
    )
    table = Table()
    for column in ("stage", "p50 ms", "p99 ms"):
        table.add_column(column)
    for stage, values in summary.stage_ms.items():
        table.add_row(stage, f"{values['p50']:.2f}", f"{values['p99']:.2f}")
    table.add_row("capture -> result", f"{summary.latency_ms['p50']:.2f}", f"{summary.latency_ms['p99']:.2f}")
    _err.print(table)
    extra = f"dropped frames: {summary.dropped}, reconnects: {summary.reconnects}"
    _err.print(extra + (f", recording: {summary.recording}" if summary.recording else ""))
    if emulated:
        _err.print(
            _styled("note:", "yellow", "measured on an emulated board: these times are QEMU's, not the device's speed")
        )


def print_bench(results: list[BenchResult]) -> None:
    """Side-by-side benchmark table with speed against the first model, and where each ran."""
    base = results[0]
    emulated = base.host.get("emulated")
    where = f"EMULATED: {emulated}" if emulated else f"{base.host['cpu']}, {base.host['cores']} cores"
    table = Table(title=f"edgekit bench on {base.device} ({where})")
    for column in ("model", "size", "load", "first", "p50", "p90", "p99", "FPS", "peak RSS", "vs first"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        name = f"{Path(r.model).name} ({r.precision})" if r.precision else Path(r.model).name
        table.add_row(
            name,
            human_bytes(r.size_bytes),
            f"{r.load_ms:.0f} ms",
            f"{r.first_ms:.1f}",
            f"{r.p50_ms:.2f}",
            f"{r.p90_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.throughput_fps:.1f}",
            f"{r.peak_rss_mb:.0f} MB",
            f"{base.p50_ms / r.p50_ms:.2f}x",
        )
    _out.print(table)
    for r in results:
        _out.print(f"{Path(r.model).name}: {r.runtime}, {r.runs} runs (std {r.std_ms:.2f} ms)")
    _out.print(f"times in ms; threads {base.threads or 'all'}; each model measured in a fresh process")
    if emulated:
        _err.print(
            _styled("note:", "yellow", "measured on an emulated board: these times are QEMU's, not the device's speed")
        )


def write_bench_csv(path: Path, results: list[BenchResult]) -> None:
    """The benchmark rows as CSV (host facts as JSON in one column), written atomically."""
    import csv
    import dataclasses
    import io

    from edgekit.fsutil import write_bytes_atomic

    buffer = io.StringIO()
    rows = [dataclasses.asdict(r) for r in results]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "host": json.dumps(row["host"])})
    write_bytes_atomic(path, buffer.getvalue().encode())


def print_devices(profiles: dict[str, DeviceProfile], host: Json) -> None:
    """Profiles and host facts."""
    table = Table(title="device profiles")
    for column in ("name", "runtime", "delegates / providers", "threads", "constraints", "description"):
        table.add_column(column)
    for p in profiles.values():
        accel = ", ".join(p.delegates if p.runtime == "tflite" else [*p.delegates, *p.providers])
        constraints = ", ".join(f"{k}={v}" for k, v in p.constraints.items())
        table.add_row(p.name, p.runtime, accel, str(p.threads or "all"), constraints, p.description)
    _out.print(table)
    facts = Table(title="this host", show_header=False)
    for key, value in host.items():
        facts.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    _out.print(facts)


def print_edgetpu(report: EdgeTpuCheck) -> None:
    """Edge TPU check: operators grouped by placement, the first fallback, compiler summary."""
    from collections import Counter

    verdict = (
        "all ops map to the Edge TPU"
        if report.fully_mapped
        else (
            f"op {report.first_fallback.index} ({report.first_fallback.op}) would fall back to the CPU: "
            f"{report.first_fallback.reason}; it and the "
            f"{len(report.ops) - report.first_fallback.index - 1} ops after it would run on the CPU"
        )
    )
    table = Table(
        title=f"Edge TPU check of {Path(report.model).name}: {report.tpu_ops}/{len(report.ops)} ops on the Edge TPU"
    )
    for column in ("op", "count", "placement", "reason"):
        table.add_column(column)
    groups = Counter((op.op, op.placement, op.reason) for op in report.ops)
    for (op, placement, reason), count in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        table.add_row(op, str(count), placement, reason)
    _out.print(table)
    _out.print(_styled("✓", "green", verdict) if report.fully_mapped else _styled("!", "yellow", verdict))
    for note in report.notes:
        _out.print(f"note: {note}")
    if report.compiler:
        compiled = report.compiler
        _out.print(
            f"edgetpu_compiler {compiled.get('version')}: {compiled.get('ops_on_edgetpu')}/"
            f"{compiled.get('total_ops')} ops mapped, {compiled.get('subgraphs')} subgraph(s), on-chip "
            f"{compiled.get('on_chip_used')} used, off-chip {compiled.get('off_chip_used')}; "
            f"output {compiled.get('output_path')}"
        )
