"""The run report: report.json, report.md and report.png (latency vs drift, marker area = size).

Built only from what is on disk (each step's step.json and the models' sidecars), so
`edgekit report DIR` regenerates it at any time.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.artifact import read_artifact
from edgekit.errors import BadInput
from edgekit.fsutil import atomic_path, size_of, write_bytes_atomic
from edgekit.recipes.runner import MARKER

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


@dataclasses.dataclass
class ArtifactRow:
    """One model of the run and everything measured about it."""

    name: str
    step: str
    format: str
    precision: str | None
    size_bytes: int
    macs: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    top1_agreement: float | None = None
    confident_agreement: float | None = None
    mean_kl: float | None = None
    accuracy: float | None = None


def build_report(out: Path) -> Json:
    """Collect the run in `out` into the report's JSON form."""
    markers = sorted(p for p in out.glob(f"*/{MARKER}") if p.parent.name[:2].isdigit())
    if not markers:
        raise BadInput(f"{out} holds no finished recipe steps", fix="run: edgekit recipe run RECIPE --out DIR")
    steps = [{"folder": m.parent.name, **json.loads(m.read_text())} for m in markers]
    source = _source_of(out)
    rows = [_row(source, "source")] if source else []
    rows += [_row(out / s["folder"] / s["output"], s["folder"]) for s in steps if s.get("output")]
    for step in steps:
        for name, figures in (step.get("metrics", {}).get("models") or {}).items():
            row = next((r for r in rows if r.name == name), None)
            if row is None:
                continue
            row.p50_ms = figures.get("p50_ms", row.p50_ms)
            row.p99_ms = figures.get("p99_ms", row.p99_ms)
            row.top1_agreement = figures.get("top1_agreement", row.top1_agreement)
            row.confident_agreement = figures.get("confident_agreement", row.confident_agreement)
            row.mean_kl = figures.get("mean_kl", row.mean_kl)
            row.accuracy = figures.get("accuracy", row.accuracy)
    if source and rows:
        rows[0].top1_agreement, rows[0].mean_kl = 1.0, 0.0
    bench = next((s["metrics"] for s in reversed(steps) if s["step"] == "bench"), None)
    return {
        "run": str(out),
        "recipe": (json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}),
        "steps": [
            {"folder": s["folder"], "step": s["step"], "seconds": s.get("seconds"), "output": s.get("output")}
            for s in steps
        ],
        "artifacts": [dataclasses.asdict(r) for r in rows],
        "bench": {k: bench.get(k) for k in ("device", "measured_on", "host")} if bench else None,
    }


def _source_of(out: Path) -> Path | None:
    run = out / "run.json"
    if not run.is_file():
        return None
    path = Path(json.loads(run.read_text()).get("source", ""))
    return path if path.exists() else None


def _row(path: Path, step: str) -> ArtifactRow:
    artifact = read_artifact(path)
    return ArtifactRow(path.name, step, artifact.format.value, artifact.precision, size_of(path), _macs(path))


def _macs(path: Path) -> int | None:
    """MACs from the model's inspector (None when it cannot tell)."""
    from edgekit.errors import EdgekitError
    from edgekit.inspectors import inspect_model

    try:
        return inspect_model(path).facts.macs
    except EdgekitError:
        return None


def write_report(out: Path) -> Path:
    """Write report.json, report.md and (with matplotlib) report.png into `out`; return report.md."""
    report = build_report(out)
    write_bytes_atomic(out / "report.json", json.dumps(report, indent=2).encode())
    plot = _plot(report, out / "report.png")
    write_bytes_atomic(out / "report.md", markdown(report, plot).encode())
    return out / "report.md"


def markdown(report: Json, plot: Path | None) -> str:
    """The report as Markdown: the artifact table, where latency was measured, step timings, the plot."""
    lines = [f"# edgekit report: {report['recipe'].get('name', Path(report['run']).name)}", ""]
    recipe = report["recipe"]
    if recipe:
        lines += [f"Recipe `{recipe.get('recipe')}`, source model `{recipe.get('source')}`, "
                  f"device profile `{recipe.get('device')}`.", ""]  # fmt: skip
    lines += [
        "| model | step | format | precision | size | MACs | p50 ms | p99 ms | top-1 agreement | "
        "confident agreement | mean KL | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["artifacts"]:
        lines.append(
            f"| {row['name']} | {row['step']} | {row['format']} | {row['precision'] or ''} | "
            f"{row['size_bytes'] / 1e6:.2f} MB | {_millions(row['macs'])} | {_num(row['p50_ms'])} | "
            f"{_num(row['p99_ms'])} | {_pct(row['top1_agreement'])} | {_pct(row['confident_agreement'])} | "
            f"{_num(row['mean_kl'], 4)} | {_pct(row['accuracy'])} |"
        )
    bench = report.get("bench")
    if bench:
        host = bench.get("host") or {}
        lines += ["", f"Latency measured on {bench.get('measured_on')} ({host.get('cpu')}, {host.get('cores')} cores, "
                      f"{host.get('machine')}) with the `{bench.get('device')}` profile's runtime settings. "
                      "Figures from a workstation are not the device's: run the recipe on the board, or give the "
                      "bench step `remote: user@board`."]  # fmt: skip
    lines += ["", "Agreement and KL are measured against the source model on the validation images.", ""]
    lines += ["| step | seconds (when it ran) |", "|---|---|"]
    lines += [f"| {s['folder']} | {s['seconds']:.1f} |" for s in report["steps"] if s.get("seconds") is not None]
    if plot:
        lines += ["", f"![latency vs drift]({plot.name})"]
    elif importlib.util.find_spec("matplotlib") is None:
        lines += ["", '(install matplotlib, `pip install "edgekit[report]"`, for the latency-vs-drift plot)']
    else:
        lines += ["", "(no latency-vs-drift plot: no bench step timed the models; add `- bench: {}` to the recipe)"]
    return "\n".join(lines) + "\n"


def _plot(report: Json, target: Path) -> Path | None:
    """Latency (x) vs top-1 agreement (y), marker area proportional to file size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in report["artifacts"] if r["p50_ms"] is not None and r["top1_agreement"] is not None]
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=120)
    biggest = max(r["size_bytes"] for r in rows)
    for row in rows:
        axis.scatter(row["p50_ms"], row["top1_agreement"] * 100, s=60 + 900 * row["size_bytes"] / biggest, alpha=0.6)
        label = f"{row['name']}\n{row['size_bytes'] / 1e6:.1f} MB"
        axis.annotate(
            label, (row["p50_ms"], row["top1_agreement"] * 100), textcoords="offset points", xytext=(8, 6), fontsize=8
        )
    axis.set_xlabel("p50 latency (ms), lower is better")
    axis.set_ylabel("top-1 agreement with the source (%)")
    bench = report.get("bench") or {}
    host = bench.get("host") or {}
    where = f"{bench.get('measured_on', '?')} ({host.get('cpu', '?')}, {host.get('cores', '?')} cores)"
    axis.set_title(f"latency vs drift on {where}\nmarker area = file size", fontsize=9)
    axis.grid(alpha=0.3)
    axis.margins(x=0.25, y=0.15)
    figure.tight_layout()
    with atomic_path(target) as partial:
        figure.savefig(partial, format="png")
    plt.close(figure)
    return target


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _millions(value: int | None) -> str:
    return "" if value is None else f"{value / 1e6:.1f} M"
