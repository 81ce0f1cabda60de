"""Recipes: validation lists every problem with its line, runs reuse unchanged steps, an interrupted
step is redone rather than trusted, and the report is written from what is on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.recipes import RecipeError, load_recipe
from edgekit.recipes.runner import run_recipe

ROOT = Path(__file__).resolve().parents[1]


def _recipe(folder: Path, model: Path, photos: Path, extra_steps: str = "") -> Path:
    path = folder / "tiny.yaml"
    path.write_text(
        f"""
name: tiny
model: {{path: {model}}}
data: {{calibration: {photos}, validation: {photos}, count: 8}}
device: cpu
steps:
  - convert: {{to: onnx}}
  - quantize: {{format: onnx, calib_count: 8}}
  - validate: {{min_agreement: 0.0}}
  - bench: {{runs: 5, warmup: 1}}
{extra_steps}"""
    )
    return path


def test_shipped_recipes_validate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        if recipe.name == "template.yaml":
            continue
        loaded = load_recipe(recipe)
        assert loaded.steps and loaded.model.startswith("fetch:")


def test_five_mistakes_are_listed_at_once_and_nothing_runs(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        """name: bad
model: {path: missing_model.pt2}
data: {calibration: bundled, validation: bundled, colour: red}
device: rpi9
steps:
  - convert: {to: onnx}
  - quantize: {scheme: int8, max_float_layers: many}
  - teleport: {}
"""
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert "5 problems, nothing was run" in result.output
    for expected in (
        "line 2: model.path",
        "line 3: unknown data key 'colour'",
        "line 4: unknown device 'rpi9'",
        "line 7: step 2 (quantize): max_float_layers must be int",
        "line 8: step 3: unknown step 'teleport'",
    ):
        assert expected in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_format_chain_is_checked(torch_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "chain.yaml"
    recipe.write_text(
        f"""model: {{path: {torch_models["pt2"]}}}
data: {{calibration: bundled, validation: bundled}}
steps:
  - convert: {{to: tflite}}
  - prune: {{amount: 0.3}}
  - compile: {{}}
"""
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    assert caught.value.problems == [
        "line 5: step 2 (prune) cannot take a tflite model: pruning needs the PyTorch or Keras model, "
        "so prune comes before convert and quantize",
    ]


def test_env_and_set_overrides(torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "env.yaml"
    recipe.write_text(
        'model: {path: "${EK_MODEL}"}\ndata: {calibration: bundled, validation: bundled}\n'
        "device: cpu\nsteps:\n  - convert: {to: onnx}\n"
    )
    with pytest.raises(RecipeError, match="EK_MODEL"):
        load_recipe(recipe)
    os.environ["EK_MODEL"] = str(torch_models["pt2"])
    try:
        loaded = load_recipe(recipe, ["device=rpi4", "steps.1.convert.to=tflite"])
    finally:
        del os.environ["EK_MODEL"]
    assert loaded.device == "rpi4" and loaded.steps[0].config.to == "tflite"


def test_set_takes_a_number_for_max_drift_and_validation_checks_choices(
    torch_models: dict[str, Path], tmp_path: Path
) -> None:
    """README's `--set steps.2.quantize.max_drift=0.9` works; a calibration method, IO dtype or CPU
    preset that does not exist is caught when the recipe is read, not after minutes of work."""
    recipe = tmp_path / "q.yaml"
    recipe.write_text(
        f'model: {{path: "{torch_models["pt2"]}"}}\ndata: {{calibration: bundled, validation: bundled}}\n'
        "device: cpu\nsteps:\n  - convert: {to: onnx}\n  - quantize: {scheme: int8}\n"
    )
    loaded = load_recipe(recipe, ["steps.2.quantize.max_drift=0.9"])
    assert float(loaded.steps[1].config.max_drift) == 0.9
    for bad, fragment in (("method=kl", "method must be one of"), ("io_dtype=int16", "io_dtype must be one of"),
                          ("cpu=riscv", "cpu must be one of")):  # fmt: skip
        with pytest.raises(RecipeError, match=fragment):
            load_recipe(recipe, [f"steps.2.quantize.{bad}"])


@pytest.mark.slow
def test_run_reuses_unchanged_steps_and_writes_report(
    torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(_recipe(tmp_path, torch_models["pt2"], photos_dir))
    out = tmp_path / "run"
    first = run_recipe(recipe, out)
    assert [s.reused for s in first.steps] == [False] * 4
    report = json.loads((out / "report.json").read_text())
    names = [a["name"] for a in report["artifacts"]]
    assert names == ["tiny.pt2", "tiny.onnx", "tiny.int8.onnx"]
    int8 = report["artifacts"][2]
    assert int8["p50_ms"] > 0 and 0 <= int8["top1_agreement"] <= 1 and int8["precision"] == "int8"
    assert (out / "report.png").stat().st_size > 10_000 and "| tiny.int8.onnx |" in (out / "report.md").read_text()

    second = run_recipe(recipe, out)
    assert [s.reused for s in second.steps] == [True] * 4
    assert [s.seconds for s in second.steps] == [s.seconds for s in first.steps]

    changed = run_recipe(
        load_recipe(_recipe(tmp_path, torch_models["pt2"], photos_dir), ["steps.2.quantize.per_channel=false"]), out
    )
    assert [s.reused for s in changed.steps] == [True, False, False, False], "only quantize and what follows rerun"

    # A half-written output under a marker that says it is finished is not trusted.
    onnx = out / "01_convert" / "tiny.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    again = run_recipe(recipe, out)
    assert not again.steps[0].reused and onnx.stat().st_size > 1000


@pytest.mark.slow
def test_sigkill_mid_step_leaves_nothing_a_rerun_trusts(
    torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path
) -> None:
    recipe = _recipe(tmp_path, torch_models["pt2"], photos_dir)
    out = tmp_path / "run"
    command = [str(Path(sys.executable).parent / "edgekit"), "recipe", "run", str(recipe), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 120
    while not (out / "02_quantize").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run should still be busy in the quantize step"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "02_quantize" / "step.json").exists()
    result = run_recipe(load_recipe(recipe), out)
    assert [s.reused for s in result.steps] == [True, False, False, False]
    leftovers = [p for p in out.rglob("*") if "partial" in p.name]
    assert leftovers == []


def test_report_command_on_empty_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 3 and "holds no finished recipe steps" in result.output


def test_report_without_a_bench_step_says_why_there_is_no_plot() -> None:
    """With matplotlib installed (it is, in the dev install) and no timed model, the report does not
    tell the user to install matplotlib: it says no bench step ran."""
    from edgekit.recipes.report import markdown

    report = {"recipe": {"name": "r"}, "run": "runs/r", "artifacts": [], "steps": [], "bench": None}
    text = markdown(report, None)
    assert "no bench step timed the models" in text and "install matplotlib" not in text
