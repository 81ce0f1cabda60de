"""The bad-input matrix: every command x every relevant fault gives one line on stderr naming the
problem and the fix, its documented exit code, no traceback, and no output file left behind.

(The pickle that runs code and the Keras Lambda layer are in test_security.py; a missing optional
extra (exit 4) is checked in the runtime-only venv of test_pi_install.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from tests.conftest import TINY_ARCH
from tests.tiny_nets import write_onnx_failing_at_run_time

FORMATS = ["onnx", "tflite", "pt2", "torchscript", "keras", "h5"]
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "pt2": ".pt2", "torchscript": ".pt", "keras": ".keras", "h5": ".h5"}


@pytest.fixture(scope="module")
def good_models(torch_models: dict[str, Path], keras_models: dict[str, Path], tmp_path_factory) -> dict[str, Path]:
    """One valid tiny model per format."""
    from edgekit.convert.api import ConvertOptions, convert_model
    from edgekit.formats import Format

    folder = tmp_path_factory.mktemp("good")
    onnx = convert_model(torch_models["pt2"], ConvertOptions(Format.ONNX, output=folder / "tiny.onnx", check_images=2))
    tflite = convert_model(onnx.output, ConvertOptions(Format.TFLITE, output=folder / "tiny.tflite", check_images=2))
    return {
        "onnx": onnx.output,
        "tflite": tflite.output,
        "pt2": torch_models["pt2"],
        "torchscript": torch_models["torchscript"],
        "keras": keras_models["keras"],
        "h5": keras_models["h5"],
    }


def _corrupt(kind: str) -> Callable[[bytes], bytes]:
    return {
        "zero-byte": lambda data: b"",
        "truncated": lambda data: data[: len(data) // 2],
        "random-bytes": lambda data: np.random.default_rng(len(data)).bytes(4096),
    }[kind]


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stderr


def _assert_clean(code: int, stderr: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("edgekit: ") and fragment in lines[-1], stderr
    assert "Traceback" not in stderr


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("fault", ["zero-byte", "truncated", "random-bytes"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_model_files(good_models: dict[str, Path], tmp_path: Path, fmt: str, fault: str) -> None:
    bad = tmp_path / f"bad{SUFFIX[fmt]}"
    bad.write_bytes(_corrupt(fault)(good_models[fmt].read_bytes()))
    before = _files(tmp_path)
    second = ["classify", bad, bad] if fmt in ("onnx", "tflite") else ["convert", bad, "--to", "onnx"]
    for command in (["inspect", bad], [*second, "--arch", TINY_ARCH]):
        code, stderr = _invoke(command)
        _assert_clean(code, stderr, 3, str(bad))
    assert _files(tmp_path) == before, "no output left behind"


@pytest.mark.parametrize(("fmt", "suffix"), [("tflite", ".onnx"), ("pt2", ".keras"), ("torchscript", ".onnx")])
def test_wrong_suffix_is_read_by_content(good_models: dict[str, Path], tmp_path: Path, fmt: str, suffix: str) -> None:
    """Formats with a signature (TFLite, zip, HDF5) are read from their bytes whatever the suffix says."""
    misnamed = tmp_path / f"model{suffix}"
    misnamed.write_bytes(good_models[fmt].read_bytes())
    result = CliRunner().invoke(cli, ["inspect", str(misnamed), "--json", "--input-shape", "1,3,32,32"])
    assert result.exit_code == 0, result.stderr
    assert f'"format": "{fmt}"' in result.stdout


@pytest.mark.parametrize(
    ("fmt", "suffix", "fragment"),
    [
        ("onnx", ".tflite", "mislabelled"),
        ("h5", ".tflite", "could not be loaded as a Keras model"),
        ("keras", ".pt2", "could not be loaded as a Keras model"),
    ],
)
def test_wrong_suffix_reported(
    good_models: dict[str, Path], tmp_path: Path, fmt: str, suffix: str, fragment: str
) -> None:
    """ONNX (protobuf) has no signature, and Keras reads a file only under its own suffix: reported."""
    misnamed = tmp_path / f"model{suffix}"
    misnamed.write_bytes(good_models[fmt].read_bytes())
    code, stderr = _invoke(["inspect", misnamed])
    _assert_clean(code, stderr, 3, fragment)


def test_saved_model_without_variables(keras_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "saved"
    shutil.copytree(keras_models["saved_model"], broken)
    shutil.rmtree(broken / "variables")
    code, stderr = _invoke(["inspect", broken])
    _assert_clean(code, stderr, 3, "could not be loaded as a SavedModel")


def _calib_cases(root: Path, photos: Path) -> dict[str, tuple[Path, str]]:
    empty = root / "empty"
    empty.mkdir()
    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))
    return {
        "missing": (root / "nope", "does not exist"),
        "empty": (empty, "yielded no usable samples"),
        "non-images and corrupt JPEGs": (junk, "2 unreadable files skipped"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "non-images and corrupt JPEGs"])
def test_bad_calibration_folders(good_models: dict[str, Path], photos_dir: Path, tmp_path: Path, case: str) -> None:
    folder, fragment = _calib_cases(tmp_path, photos_dir)[case]
    out = tmp_path / "q.onnx"
    code, stderr = _invoke(["quantize", good_models["onnx"], "--calib", folder, "-o", out])
    _assert_clean(code, stderr, 3, fragment)
    assert not out.exists()


def test_validation_data_of_the_wrong_shape(good_models: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "wrong.npy"
    np.save(data, np.zeros((4, 1, 16, 16), np.float32))
    code, stderr = _invoke(["validate", good_models["onnx"], good_models["tflite"], "--data", data])
    _assert_clean(code, stderr, 3, "the model wants [3, 32, 32]")


def test_non_image_to_classify(good_models: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    code, stderr = _invoke(["classify", good_models["onnx"], text])
    _assert_clean(code, stderr, 3, "notes.jpg")


def test_labels_that_do_not_match_the_classes(good_models: dict[str, Path], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = tmp_path / "m.onnx"
    code, stderr = _invoke(["convert", good_models["pt2"], "--to", "onnx", "--labels", labels, "-o", out])
    _assert_clean(code, stderr, 3, "has 2 names but the model outputs 10 classes")
    assert not out.exists()


def test_output_in_a_missing_folder(good_models: dict[str, Path], tmp_path: Path) -> None:
    code, stderr = _invoke(["convert", good_models["pt2"], "--to", "onnx", "-o", tmp_path / "no" / "m.onnx"])
    _assert_clean(code, stderr, 3, "does not exist")


@pytest.mark.parametrize("command", ["convert", "quantize", "prune", "run"])
def test_an_existing_output_is_never_replaced_without_force(
    good_models: dict[str, Path], photos_dir: Path, tmp_path: Path, command: str
) -> None:
    """Every command that writes a file refuses one that exists (exit 3, nothing touched, before any
    work), and replaces it with --force."""
    suffix = {"convert": ".onnx", "quantize": ".onnx", "prune": ".pt2", "run": ".avi"}[command]
    out = tmp_path / f"existing{suffix}"
    out.write_bytes(b"the user's earlier file")
    args = {
        "convert": ["convert", good_models["pt2"], "--to", "onnx", "-o", out, "--check-images", "2"],
        "quantize": ["quantize", good_models["pt2"], "--calib", photos_dir, "--val", photos_dir, "-o", out,
                     "--no-weight-rounding", "--no-bias-correction"],
        "prune": ["prune", good_models["pt2"], "--arch", TINY_ARCH, "--amount", "0.3", "-o", out],
        "run": ["run", good_models["tflite"], "--source", photos_dir, "--headless", "--max-frames", "2",
                "--record", out],
    }[command]  # fmt: skip
    code, stderr = _invoke(args)
    _assert_clean(code, stderr, 3, "already exists")
    assert "--force" in stderr and out.read_bytes() == b"the user's earlier file"
    code, stderr = _invoke([*args, "--force"])
    assert code == 0, stderr
    assert out.read_bytes() != b"the user's earlier file"


def test_integer_io_gets_its_own_default_name(keras_models: dict[str, Path], photos_dir: Path, tmp_path: Path) -> None:
    """`--io-dtype uint8` (an Edge TPU build) does not take the default name of the float-IO model."""
    from edgekit.formats import Format
    from edgekit.quantize.api import default_output

    source = tmp_path / "net.keras"
    assert default_output(source, "int8", Format.TFLITE) == tmp_path / "net.int8.tflite"
    assert default_output(source, "int8", Format.TFLITE, "uint8") == tmp_path / "net.int8-uint8io.tflite"


def test_corrupt_sidecar(good_models: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(good_models["tflite"].read_bytes())
    (tmp_path / "m.tflite.edgekit.json").write_text("{not json")
    code, stderr = _invoke(["inspect", model])
    _assert_clean(code, stderr, 3, "is not valid JSON")


def test_disk_full_leaves_nothing(good_models: dict[str, Path], tmp_path: Path) -> None:
    """A 2 KB file-size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails with EFBIG."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))

    out = tmp_path / "m.onnx"
    edgekit = Path(sys.executable).parent / "edgekit"
    command = [str(edgekit), "convert", str(good_models["pt2"]), "--to", "onnx", "-o", str(out), "--check-images", "2"]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, timeout=300, check=False)
    _assert_clean(done.returncode, done.stderr, 3, "the disk is full")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_absent_camera(good_models: dict[str, Path]) -> None:
    code, stderr = _invoke(["run", good_models["tflite"], "--source", "9", "--headless", "--max-frames", "1"])
    _assert_clean(code, stderr, 5, "camera")


def test_absent_edge_tpu_delegate(good_models: dict[str, Path]) -> None:
    code, stderr = _invoke(["bench", good_models["tflite"], "--device", "coral-usb", "--runs", "1"])
    _assert_clean(code, stderr, 5, "edgetpu")


def test_absent_compiler_when_required(good_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{path: {good_models['tflite']}}}\ndevice: coral-usb\n"
        "steps:\n  - compile: {require_compiler: true}\n"
    )
    code, stderr = _invoke(["recipe", "run", recipe, "--out", tmp_path / "out"])
    _assert_clean(code, stderr, 5, "edgetpu_compiler is not installed")


def test_prune_on_a_runtime_format(good_models: dict[str, Path]) -> None:
    code, stderr = _invoke(["prune", good_models["tflite"], "--amount", "0.3"])
    _assert_clean(code, stderr, 3, "pruning needs the framework model")


def test_unknown_device_profile(good_models: dict[str, Path]) -> None:
    code, stderr = _invoke(["bench", good_models["onnx"], "--device", "rpi9"])
    _assert_clean(code, stderr, 3, "unknown device 'rpi9'")
    code, stderr = _invoke(["bench", good_models["onnx"], "--device", "cuda"])
    _assert_clean(code, stderr, 3, "did you mean cuda-gpu?")


def test_model_that_loads_but_fails_when_run(photos_dir: Path, tmp_path: Path) -> None:
    """An ONNX file onnxruntime accepts but cannot execute (a Reshape that only breaks at run time)."""
    path = write_onnx_failing_at_run_time(tmp_path / "broken.onnx")
    code, stderr = _invoke(["classify", path, next(photos_dir.iterdir()), "--preset", "unit"])
    _assert_clean(code, stderr, 3, "onnxruntime could not run")
