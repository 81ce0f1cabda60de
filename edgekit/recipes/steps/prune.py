"""Recipe step `prune`: structured or unstructured pruning of the framework model, with recovery
on data.calibration (distill) or data.labelled (finetune)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from edgekit.formats import Family, Format
from edgekit.prune.settings import PruneSettings
from edgekit.recipes.steps import Step, StepContext, StepOutcome

if TYPE_CHECKING:
    from edgekit.recipes import Recipe


@dataclasses.dataclass
class PruneConfig(PruneSettings):
    """Options of the prune step: the PruneSettings of `edgekit prune`."""


class PruneStep(Step):
    """Prune the latest model (it must still be the PyTorch or Keras model)."""

    name = "prune"
    Config = PruneConfig
    produces_model = True
    uses_data = ("calibration", "labelled")

    @classmethod
    def check(cls, config: PruneConfig, recipe: Recipe) -> list[str]:
        """The data recovery needs (types, choices and bounds: the schema)."""
        problems = []
        if config.recover == "distill" and recipe.calibration is None:
            problems.append("prune: recover distill needs data.calibration (unlabeled photos)")
        if config.recover == "finetune" and recipe.labelled is None:
            problems.append("prune: recover finetune needs data.labelled (class folders)")
        return problems

    @classmethod
    def accepts(cls, fmt: Format, config: PruneConfig) -> str | None:
        """Only framework models have layers to remove."""
        if fmt.family in (Family.TORCH, Family.KERAS) and fmt is not Format.SAVED_MODEL:
            return None
        return "pruning needs the PyTorch or Keras model, so prune comes before convert and quantize"

    def run(self, config: PruneConfig, context: StepContext) -> StepOutcome:
        """Prune `context.current` into this step's folder (or to a command's -o)."""
        from edgekit.convert.api import read_labels
        from edgekit.prune import PruneOptions, default_output, prune_model

        data = context.calibration if config.recover == "distill" else context.labelled
        options = PruneOptions.from_settings(
            config, data if config.recover else None, preprocess=context.recipe.preprocess,
            labels=read_labels(context.recipe.labels), force=context.may_replace,
        )  # fmt: skip
        options.output = context.output_for(default_output(context.current, options).name)
        report = prune_model(context.current, options, context.recipe.load, context.progress)
        return StepOutcome(report.output, report.summary() | {"history": len(report.history)}, report)
