"""Recipe step `convert`: the latest model to ONNX or TFLite, parity-checked against it."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.formats import SUFFIX, Format
from edgekit.recipes.steps import Step, StepContext, StepOutcome


@dataclasses.dataclass
class ConvertConfig:
    """Options of the convert step."""

    to: str
    opset: int | None = None
    tolerance: float | None = None
    min_agreement: float | None = None
    check_images: int = 16
    threads: int | None = None
    input: str = "previous"  # previous: the latest model; source: the recipe's source model


class ConvertStep(Step):
    """Convert with edgekit's route table; the output is checked on real photos."""

    name = "convert"
    Config = ConvertConfig
    produces_model = True

    @classmethod
    def check(cls, config: ConvertConfig, recipe: Any) -> list[str]:
        """`to` must be a format edgekit writes."""
        return [] if config.to in ("onnx", "tflite") else [f"convert: to must be onnx or tflite, not {config.to!r}"]

    @classmethod
    def accepts(cls, fmt: Format, config: ConvertConfig) -> str | None:
        """Framework models convert to both; ONNX converts to TFLite; TFLite is final."""
        if fmt is Format.TFLITE:
            return "a TFLite model cannot be converted further"
        if fmt is Format.ONNX and config.to == "onnx":
            return "the model is already ONNX"
        return None

    @classmethod
    def produces(cls, fmt: Format, config: ConvertConfig) -> Format:
        """The target format."""
        return Format(config.to)

    def run(self, config: ConvertConfig, context: StepContext) -> StepOutcome:
        """Convert `context.current` into this step's folder."""
        from edgekit.convert.api import ConvertOptions, convert_model

        target = Format(config.to)
        output = context.output_for(f"{context.current.name.split('.')[0]}{SUFFIX[target]}")
        options = ConvertOptions(
            target=target,
            output=output,
            opset=config.opset,
            tolerance=config.tolerance,
            min_agreement=config.min_agreement,
            check_images=config.check_images,
            load=context.recipe.load,
            preprocess=context.recipe.preprocess,
            labels_file=context.recipe.labels,
            data=context.validation if context.single else None,  # a command's --data; recipes use the photos
            threads=config.threads,
            force=context.may_replace,
        )
        report = convert_model(context.current, options, context.progress)
        parity = report.parity
        return StepOutcome(
            report.output,
            {
                "parity_max_abs_diff": max((o.max_abs_diff for o in parity.outputs), default=None),
                "parity_top1_agreement": min((o.top1_agreement for o in parity.outputs), default=None),
                "seconds_convert": report.seconds,
            },
            report,
        )
