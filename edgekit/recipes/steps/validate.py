"""Recipe step `validate`: every model made so far against the source, on the validation images
(and on the labelled set for accuracy, when the recipe has one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.recipes.steps import BoardFields, Step, StepContext, StepOutcome
from edgekit.schema import option

if TYPE_CHECKING:
    from edgekit.board import Board
    from edgekit.jsontypes import Json
    from edgekit.recipes import Recipe
    from edgekit.runtimes import Runner
    from edgekit.validate import Limits, ValidationReport


@dataclasses.dataclass
class ValidateConfig(BoardFields):
    """Options of the validate step (the same as `edgekit validate`); limits apply to every model.
    With emulate or remote (BoardFields) the candidates run on that board's kernels."""

    min_agreement: float | None = option(None, low=0, high=1, help="Minimum top-1 agreement.")
    min_top5_agreement: float | None = option(None, low=0, high=1, help="Minimum top-5 agreement.")
    min_confident_agreement: float | None = option(
        None, low=0, high=1, help="Minimum top-1 agreement on images where the reference is confident."
    )
    max_kl: float | None = option(None, low=0, help="Maximum mean KL divergence.")
    max_accuracy_drop: float | None = option(
        None, low=0, help="Maximum accuracy drop in points (needs data.labelled or labels_csv)."
    )
    max_drift: str | None = option(None, help="All limits in one spec, e.g. agreement=0.95,kl=0.05.")
    confidence: float = option(0.5, low=0, high=1, help="Reference probability that counts as confident.")
    seed: int = option(0, help="Sampling seed.")
    labels_csv: str | None = option(None, help="CSV of filename,label rows for the validation images.")
    threads: int | None = option(None, low=1, high=256, help="Runtime threads.")

    def limits(self) -> Limits:
        """The Limits these options describe (single limits override the spec)."""
        from edgekit.validate import Limits

        limits = Limits.parse(self.max_drift) if self.max_drift else Limits()
        for key in ("min_agreement", "min_top5_agreement", "min_confident_agreement", "max_kl", "max_accuracy_drop"):
            if getattr(self, key) is not None:
                setattr(limits, key, getattr(self, key))
        return limits


class ValidateStep(Step):
    """Drift of each model vs the source; fails (after checking them all) if any breaks a limit."""

    name = "validate"
    Config = ValidateConfig
    uses_data = ("validation", "labelled")
    acts_on_all = True

    @classmethod
    def check(cls, config: ValidateConfig, recipe: Recipe) -> list[str]:
        """Needs validation data; the accuracy limit needs labels; the spec must parse."""
        from edgekit.errors import EdgekitError

        problems = [] if recipe.validation is not None else ["validate: needs data.validation"]
        if config.max_accuracy_drop is not None and recipe.labelled is None and config.labels_csv is None:
            problems.append("validate: max_accuracy_drop needs data.labelled (class folders) or labels_csv")
        try:
            config.limits()
        except EdgekitError as exc:
            problems.append(f"validate: max_drift {config.max_drift!r}: {exc.message}")
        return problems

    def run(self, config: ValidateConfig, context: StepContext) -> StepOutcome:
        """Compare each model with the source; the outcome's error names every model over a limit."""
        from edgekit.artifact import read_artifact
        from edgekit.errors import DriftExceeded
        from edgekit.runtimes import open_runner
        from edgekit.validate import MemoRunner

        limits = config.limits()
        metrics: Json = {"models": {}}
        reports, failures = [], []
        board = config.open_board(context.device, context.progress)
        with open_runner(read_artifact(context.source), threads=config.threads, load=context.recipe.load) as opened:
            reference = MemoRunner(opened)  # the source runs once per image, not once per candidate
            for model in context.models:
                report = self._check(model, config, context, limits, reference, metrics, board)
                reports.append(report)
                if report.failures():
                    failures.append(f"{model.name} is over its drift budget: {'; '.join(report.failures())}")
        error = None
        if failures:
            error = DriftExceeded(
                " | ".join(failures), fix="loosen the limits or keep more layers in float (--max-drift with quantize)"
            )
        return StepOutcome(None, metrics, reports, error)

    def _check(
        self,
        model: Path,
        config: ValidateConfig,
        context: StepContext,
        limits: Limits,
        reference: Runner,
        metrics: Json,
        board: Board | None = None,
    ) -> ValidationReport:
        """Validate one model and record its figures in `metrics`; return its ValidationReport."""
        from edgekit.convert.api import read_labels
        from edgekit.validate import validate_models

        context.progress(f"validating {model.name} against {context.source.name}")
        common = {
            "load": context.recipe.load,
            "preprocess": context.recipe.preprocess,
            "reference_runner": reference,
            "labels": read_labels(context.recipe.labels),
            "threads": config.threads,
        }
        report = validate_models(
            context.source, model, context.validation, count=context.count, seed=config.seed, limits=limits,
            confidence=config.confidence, labels_csv=Path(config.labels_csv) if config.labels_csv else None,
            board=board, **common,
        )  # fmt: skip
        entry = {
            "top1_agreement": report.top1_agreement,
            "confident_agreement": report.confident_agreement,
            "confident_images": report.confident_images,
            "mean_kl": report.mean_kl,
            "images": report.images,
            "accuracy": report.candidate_accuracy,
        }
        if context.labelled is not None:
            labelled = validate_models(context.source, model, context.labelled, **common)
            entry.update(accuracy=labelled.candidate_accuracy, source_accuracy=labelled.reference_accuracy)
            report.reference_accuracy = labelled.reference_accuracy
            report.candidate_accuracy = labelled.candidate_accuracy
        metrics["models"][model.name] = entry
        return report
