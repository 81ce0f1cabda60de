"""Recipe step `convert`: the latest model to ONNX or TFLite, parity-checked against it."""

from __future__ import annotations

import dataclasses

from edgekit.convert.settings import ConvertSettings
from edgekit.formats import SUFFIX, Format
from edgekit.recipes.steps import INPUT_HELP, Step, StepContext, StepInput, StepOutcome
from edgekit.schema import option, shared_values


@dataclasses.dataclass
class ConvertConfig(ConvertSettings):
    """Options of the convert step: the ConvertSettings of `edgekit convert` and which model it takes."""

    input: StepInput = option("previous", flag="", help=INPUT_HELP)


class ConvertStep(Step):
    """Convert with edgekit's route table; the output is checked on real photos."""

    name = "convert"
    Config = ConvertConfig
    produces_model = True

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
            **shared_values(config, ConvertSettings),
            output=output, load=context.recipe.load, preprocess=context.recipe.preprocess,
            labels_file=context.recipe.labels, force=context.may_replace,
            data=context.validation if context.single else None,  # a command's --data; recipes use the photos
        )  # fmt: skip
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
