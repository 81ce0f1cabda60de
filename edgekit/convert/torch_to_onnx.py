"""PyTorch -> ONNX (torch.export + the dynamo exporter; TorchScript via the TorchScript exporter),
and PyTorch -> TFLite through ONNX and edgekit's NHWC translator."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.convert.onnx_to_tflite import onnx_to_tflite
from edgekit.convert.routes import ConvertJob
from edgekit.errors import MissingDependency, UnsupportedRoute, first_line
from edgekit.formats import Format
from edgekit.fsutil import log_tail, quiet_native_output
from edgekit.interrupts import deferred_interrupt
from edgekit.loaders.torch_loader import exported_program, import_torch

if TYPE_CHECKING:
    from types import ModuleType

    import torch

    from edgekit.jsontypes import Json

DYNAMO_OPSET = 18  # the dynamo exporter's lowest clean opset (it bumps 17 to 18 for Pad anyway)
TORCHSCRIPT_OPSET = 17


def convert(job: ConvertJob) -> Json:
    """Export the source torch model to ONNX at job.target."""
    torch = import_torch()
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("exporting PyTorch to ONNX", "onnx and onnxscript", "torch") from exc
    example = (job.runner.example_input(),)
    with deferred_interrupt("torch's exporter"), quiet_native_output() as log:
        try:
            if job.source.format is Format.TORCHSCRIPT:
                exporter = _export_torchscript(torch, job, example)
            else:
                exporter = _export_dynamo(torch, job, example)
        except UnsupportedRoute:
            raise
        except Exception as exc:
            raise UnsupportedRoute(
                f"torch.onnx.export failed ({first_line(exc, 200)})",
                fix=f"exporter log: {log_tail(log)}",
            ) from exc
    return {"exporter": exporter, "opset": _opset_of(job.target)}


def _export_dynamo(torch: ModuleType, job: ConvertJob, example: tuple[torch.Tensor, ...]) -> str:
    if job.source.format is Format.PT2:
        program = exported_program(job.source.path)
    else:
        program = torch.export.export(job.runner.model, example)
    torch.onnx.export(
        program,
        example,
        str(job.target),
        dynamo=True,
        opset_version=job.opset or DYNAMO_OPSET,
        input_names=["input"],
        output_names=["output"],
        external_data=False,
        verbose=False,
    )
    return "torch.export (dynamo)"


def _export_torchscript(torch: ModuleType, job: ConvertJob, example: tuple[torch.Tensor, ...]) -> str:
    torch.onnx.export(
        job.runner.model,
        example,
        str(job.target),
        dynamo=False,
        opset_version=job.opset or TORCHSCRIPT_OPSET,
        input_names=["input"],
        output_names=["output"],
        do_constant_folding=True,
    )
    return "TorchScript"


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def convert_to_tflite(job: ConvertJob) -> Json:
    """torch -> ONNX (temporary) -> fp32 NHWC TFLite at job.target."""
    with tempfile.TemporaryDirectory(prefix="edgekit-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        notes = convert(ConvertJob(job.source, job.runner, onnx_path, job.opset, job.input_shape))
        onnx_to_tflite(onnx_path, job.target, None)
    return {**notes, "route": "torch -> ONNX -> edgekit NHWC translator -> TFLite converter"}
