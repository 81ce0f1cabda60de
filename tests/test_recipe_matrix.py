"""The broken-recipe matrix: recipes with one mistake each (enum values, bounds, types, unknown steps
and keys, chain order, device mismatches, missing files), each caught by `edgekit recipe validate`
with a line naming the problem, exit 3, and nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli

GOOD_STEPS = "  - convert: {to: onnx}\n  - quantize: {scheme: int8}\n  - validate: {min_agreement: 0.5}\n"

# (case, what replaces a part of the good recipe, fragment of the message)
CASES = [
    ("unknown step", {"steps": "  - teleport: {}\n"}, "unknown step"),
    ("unknown step option", {"steps": "  - quantize: {colour: red}\n"}, "unknown option 'colour'"),
    ("unknown top-level key", {"extra": "colour: red\n"}, "colour"),
    ("scheme value", {"steps": "  - quantize: {scheme: int4}\n"}, "scheme must be one of"),
    ("calibration method", {"steps": "  - quantize: {method: kl}\n"}, "method must be one of"),
    ("io dtype", {"steps": "  - quantize: {io_dtype: int16}\n"}, "io_dtype must be one of"),
    ("cpu preset", {"steps": "  - quantize: {cpu: riscv}\n"}, "cpu must be one of"),
    ("convert target", {"steps": "  - convert: {to: coreml}\n"}, "coreml"),
    ("option type", {"steps": "  - quantize: {max_float_layers: many}\n"}, "max_float_layers must be"),
    ("speed floor bound", {"steps": "  - quantize: {min_speedup: -1}\n"}, "min_speedup must be above 0"),
    ("drift budget value", {"steps": "  - quantize: {max_drift: 'agreement=2'}\n"}, "max_drift"),
    ("data count bound", {"data": "data: {calibration: bundled, validation: bundled, count: 0}\n"}, "data.count"),
    ("unknown device", {"device": "device: rpi9\n"}, "unknown device 'rpi9'"),
    ("missing model file", {"model": "model: {path: no_such_model.pt2}\n"}, "no_such_model.pt2"),
    (
        "missing calibration folder",
        {"data": "data: {calibration: /no/such/photos, validation: bundled}\n"},
        "/no/such/photos",
    ),
    (
        "chain order: quantize a tflite",
        {"steps": "  - convert: {to: tflite}\n  - quantize: {format: tflite}\n"},
        "cannot take a tflite model",
    ),
    (
        "device: Edge TPU given ONNX",
        {"device": "device: coral-usb\n"},
        "coral-usb needs full-int8 tflite models with uint8/int8 IO; step 2 (quantize) produces int8 with float IO "
        "as onnx",
    ),
    (
        "device: Edge TPU given float IO",
        {"device": "device: coral-usb\n", "steps": "  - quantize: {format: tflite}\n"},
        "needs full-int8 tflite models with uint8/int8 IO; step 1",
    ),
    (
        "device: Edge TPU given float TFLite",
        {"device": "device: coral-devboard\n", "steps": "  - convert: {to: tflite}\n"},
        "step 1 (convert) produces a float model",
    ),
    (
        "device: CUDA given TFLite",
        {"device": "device: cuda-gpu\n", "steps": "  - convert: {to: tflite}\n"},
        "cuda-gpu runs onnx models",
    ),
]


def _write(folder: Path, model: Path, change: dict[str, str]) -> Path:
    parts = {
        "model": f"model: {{path: {model}}}\n",
        "data": "data: {calibration: bundled, validation: bundled}\n",
        "device": "device: cpu\n",
        "steps": GOOD_STEPS,
        "extra": "",
    } | change
    path = folder / "recipe.yaml"
    text = f"name: matrix\n{parts['model']}{parts['data']}{parts['device']}{parts['extra']}steps:\n{parts['steps']}"
    path.write_text(text)
    return path


def test_the_good_recipe_validates(torch_models: dict[str, Path], tmp_path: Path) -> None:
    """The recipe every case breaks in one place is itself valid."""
    result = CliRunner().invoke(cli, ["recipe", "validate", str(_write(tmp_path, torch_models["pt2"], {}))])
    assert result.exit_code == 0, result.output + result.stderr


@pytest.mark.parametrize(("case", "change", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_one_mistake_is_caught_before_anything_runs(
    torch_models: dict[str, Path], tmp_path: Path, case: str, change: dict[str, str], fragment: str
) -> None:
    recipe = _write(tmp_path, torch_models["pt2"], change)
    result = CliRunner().invoke(cli, ["recipe", "validate", str(recipe)])
    assert result.exit_code == 3, f"{case}: {result.output} {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekit: ") and fragment in lines[0], f"{case}: {result.stderr}"
    assert "line " in lines[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # nothing run, nothing written


def test_validate_json_says_valid_or_lists_the_problems(torch_models: dict[str, Path], tmp_path: Path) -> None:
    """`recipe validate --json`: the steps with their lines, or the problems (exit 3 all the same)."""
    import json

    good = CliRunner().invoke(cli, ["recipe", "validate", str(_write(tmp_path, torch_models["pt2"], {})), "--json"])
    data = json.loads(good.stdout)
    assert good.exit_code == 0 and data["valid"] and [s["step"] for s in data["steps"]] == [
        "convert", "quantize", "validate",
    ]  # fmt: skip
    assert all(isinstance(s["line"], int) and s["line"] > 1 for s in data["steps"])
    bad = _write(tmp_path, torch_models["pt2"], {"steps": "  - quantize: {method: kl}\n"})
    result = CliRunner().invoke(cli, ["recipe", "validate", str(bad), "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 3 and not data["valid"] and "method must be one of" in data["problems"][0]
