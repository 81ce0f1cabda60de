"""Recipe step `compile`: the Edge TPU pre-compile check of a full-int8 TFLite model, then
edgetpu_compiler when it is installed (required with `require_compiler: true`)."""

from __future__ import annotations

import dataclasses
import shutil
from typing import TYPE_CHECKING

from edgekit.formats import Format
from edgekit.recipes.steps import Step, StepContext, StepOutcome
from edgekit.schema import option

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


@dataclasses.dataclass
class CompileConfig:
    """Options of the compile step."""

    require_compiler: bool = option(False, help="Fail when edgetpu_compiler is not installed.")
    require_full_mapping: bool = option(False, help="Fail when any op would run on the CPU.")


class CompileStep(Step):
    """Check which ops the Edge TPU takes; compile when the compiler is present."""

    name = "compile"
    Config = CompileConfig
    produces_model = True
    keeps_precision = True

    @classmethod
    def accepts(cls, fmt: Format, config: CompileConfig) -> str | None:
        """Only TFLite models go to the Edge TPU compiler."""
        return None if fmt is Format.TFLITE else "the Edge TPU compiler takes a full-int8 TFLite model"

    def run(self, config: CompileConfig, context: StepContext) -> StepOutcome:
        """Check, compile into this step's folder, and keep the latest model for later steps."""
        from edgekit.edgetpu import INSTALL_COMPILER, check_and_compile
        from edgekit.errors import DeviceUnavailable, DriftExceeded

        if config.require_compiler and shutil.which("edgetpu_compiler") is None:
            raise DeviceUnavailable("compile: edgetpu_compiler is not installed", fix=INSTALL_COMPILER)
        out_dir = context.output if context.single and context.output else context.folder  # a command's --out-dir
        report = check_and_compile(context.current, out_dir, force=context.may_replace)
        if config.require_full_mapping and not report.fully_mapped:
            first = report.first_fallback
            raise DriftExceeded(
                f"compile: {report.tpu_ops}/{len(report.ops)} ops map to the Edge TPU; the first on the CPU is "
                f"{first.op if first else '?'} ({first.reason if first else ''})",
                fix="quantize with io_dtype uint8/int8 and keep every layer int8",
            )
        compiled = (report.compiler or {}).get("output_path")
        metrics: Json = {
            "ops": len(report.ops),
            "ops_on_edgetpu": report.tpu_ops,
            "fully_mapped": report.fully_mapped,
            "first_fallback": dataclasses.asdict(report.first_fallback) if report.first_fallback else None,
            "compiled": bool(compiled),
            "notes": report.notes,
        }
        output = out_dir / compiled.rsplit("/", 1)[-1] if compiled else None
        return StepOutcome(output, metrics, report)
