"""Recipe step `validate`: every model made so far against the source, on the validation images
(and on the labelled set for accuracy, when the recipe has one)."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.recipes.steps import Step, StepContext, StepOutcome


@dataclasses.dataclass
class ValidateConfig:
    """Options of the validate step; limits apply to every model checked."""

    min_agreement: float | None = None
    max_kl: float | None = None
    max_accuracy_drop: float | None = None  # in points, needs data.labelled
    confidence: float = 0.5


class ValidateStep(Step):
    """Drift of each model vs the source; fails (after checking them all) if any breaks a limit."""

    name = "validate"
    Config = ValidateConfig
    uses_data = ("validation", "labelled")
    acts_on_all = True

    @classmethod
    def check(cls, config: ValidateConfig, recipe: Any) -> list[str]:
        """Needs validation data; the accuracy limit needs labelled data."""
        problems = [] if recipe.validation is not None else ["validate: needs data.validation"]
        if config.max_accuracy_drop is not None and recipe.labelled is None:
            problems.append("validate: max_accuracy_drop needs data.labelled (class folders)")
        return problems

    def run(self, config: ValidateConfig, context: StepContext) -> StepOutcome:
        """Compare each model with the source; raise DriftExceeded naming every model over a limit."""
        from edgekit.artifact import read_artifact
        from edgekit.errors import DriftExceeded
        from edgekit.runtimes import open_runner
        from edgekit.validate import Limits, MemoRunner

        limits = Limits(
            min_agreement=config.min_agreement,
            max_kl=config.max_kl,
            max_accuracy_drop=config.max_accuracy_drop,
        )
        metrics: dict[str, Any] = {"models": {}}
        failures = []
        with open_runner(read_artifact(context.source), load=context.recipe.load) as opened:
            reference = MemoRunner(opened)  # the source runs once per image, not once per candidate
            for model in context.models:
                failures += self._check(model, config, context, limits, reference, metrics)
        if failures:
            raise DriftExceeded(f"validate: {'; '.join(failures)}", fix="loosen the limits or change the steps")
        return StepOutcome(None, metrics)

    def _check(
        self,
        model: Any,
        config: ValidateConfig,
        context: StepContext,
        limits: Any,
        reference: Any,
        metrics: dict[str, Any],
    ) -> list[str]:
        """Validate one model; record its figures in `metrics`; return its broken limits."""
        from edgekit.validate import validate_models

        context.progress(f"validating {model.name} against {context.source.name}")
        common = {"load": context.recipe.load, "preprocess": context.recipe.preprocess, "reference_runner": reference}
        report = validate_models(
            context.source, model, context.validation, count=context.count, limits=limits,
            confidence=config.confidence, **common,
        )  # fmt: skip
        entry = {
            "top1_agreement": report.top1_agreement,
            "confident_agreement": report.confident_agreement,
            "confident_images": report.confident_images,
            "mean_kl": report.mean_kl,
            "images": report.images,
        }
        if context.labelled is not None:
            labelled = validate_models(context.source, model, context.labelled, **common)
            entry.update(accuracy=labelled.candidate_accuracy, source_accuracy=labelled.reference_accuracy)
            report.reference_accuracy = labelled.reference_accuracy
            report.candidate_accuracy = labelled.candidate_accuracy
        metrics["models"][model.name] = entry
        return [f"{model.name}: {problem}" for problem in report.failures()]
