"""Recipe step `quantize`: int8 (or dynamic/fp16) with calibration and an optional drift budget."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from edgekit.formats import SUFFIX, Format
from edgekit.quantize.settings import QuantizeSettings
from edgekit.recipes.steps import INPUT_HELP, BoardFields, Step, StepContext, StepInput, StepOutcome
from edgekit.schema import option, shared_values

if TYPE_CHECKING:
    from edgekit.recipes import Recipe


@dataclasses.dataclass
class QuantizeConfig(BoardFields, QuantizeSettings):
    """Options of the quantize step: the QuantizeSettings of `edgekit quantize`, where the drift is
    measured (BoardFields: with emulate or remote, on that board's kernels) and which model it takes."""

    input: StepInput = option("previous", flag="", help=INPUT_HELP)


class QuantizeStep(Step):
    """Quantize the latest model; it is written only if it meets `max_drift`."""

    name = "quantize"
    Config = QuantizeConfig
    produces_model = True
    uses_data = ("calibration", "validation")

    @classmethod
    def check(cls, config: QuantizeConfig, recipe: Recipe) -> list[str]:
        """The budget's syntax and calibration data for int8 (types, choices and bounds: the schema)."""
        from edgekit.errors import EdgekitError
        from edgekit.validate import Limits

        problems = []
        if config.max_drift is not None:
            try:
                Limits.parse(str(config.max_drift))
            except EdgekitError as exc:
                problems.append(f"quantize: max_drift {config.max_drift!r}: {exc.message}")
        if config.scheme == "int8" and recipe.calibration is None:
            problems.append("quantize: int8 needs data.calibration")
        return problems

    @classmethod
    def accepts(cls, fmt: Format, config: QuantizeConfig) -> str | None:
        """Anything but an already quantized TFLite model."""
        return "TFLite models are quantized when converted from their source" if fmt is Format.TFLITE else None

    @classmethod
    def produces(cls, fmt: Format, config: QuantizeConfig) -> Format:
        """The chosen format, else the library's default (ONNX for torch/ONNX sources, TFLite for Keras)."""
        from edgekit.quantize.api import default_target

        return Format(config.format) if config.format else default_target(fmt)

    def run(self, config: QuantizeConfig, context: StepContext) -> StepOutcome:
        """Quantize `context.current` into this step's folder."""
        from edgekit.devices import load_profile
        from edgekit.errors import DriftExceeded
        from edgekit.formats import detect_format
        from edgekit.quantize.api import QuantizeOptions, quantize_model

        target = self.produces(detect_format(context.current), config)
        output = context.output_for(f"{context.current.name.split('.')[0]}.{config.scheme}{SUFFIX[target]}")
        cpu = config.cpu or load_profile(config.device or context.device).quantize_cpu or "auto"
        options = QuantizeOptions(
            **shared_values(config, QuantizeSettings) | {"cpu": cpu, "format": target.value},
            output=output, calib=context.calibration, val=context.validation, val_count=context.count,
            load=context.recipe.load, preprocess=context.recipe.preprocess, labels_file=context.recipe.labels,
            force=context.may_replace,
        )  # fmt: skip
        board = config.open_board(context.device, context.progress)
        report = quantize_model(context.current, options, context.progress, board=board)
        val = report.validation
        error = None
        if not report.passed:
            error = DriftExceeded(
                f"{context.current.name} could not meet the drift budget: {'; '.join(val.failures())}",
                fix="nothing was written; raise max_float_layers, add calibration images or relax max_drift",
            )
        return StepOutcome(
            report.output,
            {
                "top1_agreement_vs_input": val.top1_agreement,
                "float_layers": len(report.float_layers),
                "speedup_vs_input": report.float_ms / report.quant_ms,
                "size_ratio_vs_input": report.quant_bytes / report.float_bytes,
            },
            report,
            error,
        )
