"""Recipe step `quantize`: int8 (or dynamic/fp16) with calibration and an optional drift budget."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.formats import SUFFIX, Format
from edgekit.recipes.steps import BoardFields, Step, StepContext, StepOutcome


@dataclasses.dataclass
class QuantizeConfig(BoardFields):
    """Options of the quantize step (the same as `edgekit quantize`). With emulate or remote
    (BoardFields), each candidate's drift is measured on that board's kernels."""

    scheme: str = "int8"
    format: str | None = None  # onnx or tflite; default: ONNX for torch/ONNX, TFLite for Keras
    method: str = "minmax"
    per_channel: bool = True
    bias_correction: bool = True
    weight_rounding: bool = True
    float_softmax: bool = True
    cpu: str | None = None  # default: the device profile's int8 kernels
    io_dtype: str = "float"
    max_drift: str | float | None = None  # e.g. 0.95 or "agreement=0.95,kl=0.05"
    max_float_layers: int = 16
    min_speedup: float | None = None  # keep no float layer that takes the speed-up vs float below this
    keep_float: list = dataclasses.field(default_factory=list)
    calib_count: int = 200
    seed: int = 0
    threads: int | None = None
    input: str = "previous"  # previous: the latest model; source: the recipe's source model


class QuantizeStep(Step):
    """Quantize the latest model; it is written only if it meets `max_drift`."""

    name = "quantize"
    Config = QuantizeConfig
    produces_model = True
    uses_data = ("calibration", "validation")

    @classmethod
    def check(cls, config: QuantizeConfig, recipe: Any) -> list[str]:
        """Known scheme, format and budget syntax; calibration data for int8."""
        from edgekit.errors import EdgekitError
        from edgekit.quantize.common import SCHEMES
        from edgekit.validate import Limits

        problems = []
        if config.scheme not in SCHEMES:
            problems.append(f"quantize: scheme must be one of {', '.join(SCHEMES)}, not {config.scheme!r}")
        if config.format not in (None, "onnx", "tflite"):
            problems.append(f"quantize: format must be onnx or tflite, not {config.format!r}")
        if config.max_drift is not None:
            try:
                Limits.parse(str(config.max_drift))
            except EdgekitError as exc:
                problems.append(f"quantize: max_drift {config.max_drift!r}: {exc.message}")
        problems += _choice_problems(config)
        if config.min_speedup is not None and config.min_speedup <= 0:
            problems.append(f"quantize: min_speedup must be above 0, not {config.min_speedup!r}")
        if config.scheme == "int8" and recipe.calibration is None:
            problems.append("quantize: int8 needs data.calibration")
        return problems + config.board_problems("quantize")

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
        from edgekit.validate import Limits

        target = self.produces(detect_format(context.current), config)
        output = context.output_for(f"{context.current.name.split('.')[0]}.{config.scheme}{SUFFIX[target]}")
        cpu = config.cpu or load_profile(config.device or context.device).quantize_cpu or "auto"
        options = QuantizeOptions(
            scheme=config.scheme,
            target=target,
            output=output,
            calib=context.calibration,
            calib_count=config.calib_count,
            val=context.validation,
            val_count=context.count,
            method=config.method,
            per_channel=config.per_channel,
            bias_correction=config.bias_correction,
            weight_rounding=config.weight_rounding,
            float_softmax=config.float_softmax,
            cpu=cpu,
            io_dtype=config.io_dtype,
            budget=Limits.parse(str(config.max_drift)) if config.max_drift is not None else None,
            max_float_layers=config.max_float_layers,
            min_speedup=config.min_speedup,
            keep_float=list(config.keep_float),
            load=context.recipe.load,
            preprocess=context.recipe.preprocess,
            labels_file=context.recipe.labels,
            seed=config.seed,
            force=context.may_replace,
            threads=config.threads,
        )
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


def _choice_problems(config: QuantizeConfig) -> list[str]:
    """The options that must be one of a known set: calibration method, IO dtype, CPU preset."""
    from edgekit.quantize.cpu import PRESETS
    from edgekit.quantize.onnx_quant import CALIBRATION_METHODS
    from edgekit.quantize.tflite_quant import IO_DTYPES

    choices = {"method": CALIBRATION_METHODS, "io_dtype": IO_DTYPES, "cpu": (None, "auto", *PRESETS)}
    return [
        f"quantize: {key} must be one of {', '.join(c for c in allowed if c)}, not {getattr(config, key)!r}"
        for key, allowed in choices.items()
        if getattr(config, key) not in allowed
    ]
