"""Run by tests/test_int8_kernels.py on AVX2 kernels (tests/avx2.py): what edgekit sees and does there.
Prints one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgekit.artifact import ModelArtifact, read_artifact
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.quantize.cpu import hidden_by_cpuid, host_preset
from edgekit.runtimes import open_runner
from edgekit.validate import validate_models


def main() -> None:
    """argv: a saturating QDQ model, its input value, a tiny source model, calibration crops, a work folder."""
    saturating, value, source, calib, work = sys.argv[1:6]
    facts: dict[str, object] = {"preset": host_preset().name, "hidden": sorted(hidden_by_cpuid())}
    artifact = ModelArtifact(Path(saturating), Format.ONNX)
    for exact in (False, True):
        with open_runner(artifact, exact_int8=exact) as runner:
            feed = np.full([d or 1 for d in runner.inputs()[0].shape], float(value), np.float32)
            facts[f"saturating_{'exact' if exact else 'kernels'}"] = float(runner.infer([feed])[0].ravel()[0])
    for cpu in ("x86-vnni", "x86-avx2"):
        options = QuantizeOptions(calib=Path(calib), cpu=cpu, output=Path(work) / f"{cpu}.onnx")
        report = quantize_model(Path(source), options)
        with open_runner(read_artifact(report.output)) as runner:
            facts[cpu] = {"arithmetic": report.settings["int8_arithmetic"], "runtime": runner.describe()}
        facts[cpu]["validate"] = validate_models(Path(source), options.output, Path(calib)).candidate_runtime
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
