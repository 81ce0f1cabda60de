"""The model zoo table: every torch family and Keras application of tests/zoo_models.py through
convert -> ONNX, convert -> TFLite (parity against the source on real-photo crops) and the default
`edgekit quantize` (int8: ONNX for torch, TFLite for Keras), with int8's agreement and speed against
fp32 timed side by side on this host, and what is refused and why.

Run: make bench-zoo (about 15 minutes on 2 cores). Weights are random (nothing is downloaded) with
BatchNorm statistics from real crops, so the agreement column shows how int8 treats each architecture,
not the accuracy of a trained model.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.devices import host_facts
from edgekit.errors import EdgekitError
from edgekit.formats import Format
from edgekit.preprocess import PreprocessOverrides
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops
from tests.zoo_models import (
    KERAS_APPLICATIONS,
    KERAS_SIZE,
    SIZE,
    TORCH_FAMILIES,
    save_keras_application,
    save_torch_family,
)


def _convert(source: Path, target: Format, preprocess: PreprocessOverrides) -> tuple[str, Path | None]:
    """'max |Δ|' of the conversion, or the refusal."""
    try:
        output = source.with_suffix(f".{target.value}")
        report = convert_model(source, ConvertOptions(target, output=output, preprocess=preprocess, force=True))
    except EdgekitError as exc:
        return f"refused (exit {exc.exit_code}): {exc.message[:90]}", None
    parity = report.parity.outputs[0]
    return f"{parity.max_abs_diff:.1e}, {parity.top1_agreement:.0%}", report.output


def _quantize(source: Path, crops: dict[str, Path], preprocess: PreprocessOverrides) -> str:
    """int8 agreement and speed vs fp32, or the refusal."""
    output = source.with_suffix(".int8" + source.suffix)
    options = QuantizeOptions(calib=crops["calib"], calib_count=64, val=crops["val"], val_count=100,
                              output=output, preprocess=preprocess, force=True)  # fmt: skip
    try:
        report = quantize_model(source, options)
    except EdgekitError as exc:
        return f"refused (exit {exc.exit_code}): {exc.message[:90]}"
    speed = report.float_ms / report.quant_ms
    slower = " (slower: said so)" if any("slower" in w or "speed" in w for w in report.warnings) else ""
    return f"{report.target} {report.validation.top1_agreement:.1%}, {speed:.2f}x{slower}"


def main() -> None:
    """Print the README's zoo table (markdown) for every family."""
    facts = host_facts()
    print(f"host: {facts.get('cpu')}, {facts.get('cores')} cores")
    rows = ["| family | source | → ONNX (max abs diff, top-1) | → TFLite | default int8 (agreement, speed vs fp32) |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = [(name, "torch", SIZE) for name in TORCH_FAMILIES] + [
            (n, "keras", KERAS_SIZE) for n in KERAS_APPLICATIONS
        ]
        for name, kind, size in jobs:
            start = time.perf_counter()
            crops = {part: folder / f"{part}{size}" for part in ("calib", "val")}
            for seed, part in enumerate(crops):
                if not crops[part].exists():
                    write_crops(crops[part], 100, seed=seed + 11, size=size)
            source = save_torch_family(name, folder) if kind == "torch" else save_keras_application(name, folder)
            preprocess = PreprocessOverrides(preset="unit" if kind == "torch" else None, size=(size, size))
            if kind == "keras":
                preprocess = PreprocessOverrides(
                    mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255), size=(size, size)
                )
            onnx_cell, _ = _convert(source, Format.ONNX, preprocess)
            tflite_cell, _ = _convert(source, Format.TFLITE, preprocess)
            int8_cell = _quantize(source, crops, preprocess)
            rows.append(f"| {name} | {kind} | {onnx_cell} | {tflite_cell} | {int8_cell} |")
            print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
