"""`edgekit bench` and `edgekit devices`: fresh-process measurements, delegates that never fall back
silently, device profiles as data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.bench import BenchSettings, bench_models
from edgekit.cli.main import cli
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.devices import DeviceProfile, builtin_profiles, load_profile
from edgekit.errors import BadInput
from edgekit.formats import Format


@pytest.fixture(scope="module")
def tiny(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    out = {}
    for target in (Format.ONNX, Format.TFLITE):
        options = ConvertOptions(to=target, output=folder / f"tiny.{target.value}", check_images=2)
        out[target.value] = convert_model(torch_models["pt2"], options).output
    return out


def test_bench_measures_each_model_in_its_own_process(tiny: dict[str, Path]) -> None:
    results = bench_models([tiny["onnx"], tiny["tflite"]], BenchSettings(runs=30, warmup=3))
    assert [r.format for r in results] == ["onnx", "tflite"]
    for result in results:
        assert result.runs >= 30 and 0 < result.p50_ms <= result.p90_ms <= result.p99_ms
        assert result.load_ms > 0 and result.first_ms > 0 and result.peak_rss_mb > 10
        assert result.throughput_fps == pytest.approx(1000 / result.mean_ms)
        assert result.host["cores"] and "onnxruntime" in result.host["runtimes"]
    assert "onnxruntime" in results[0].runtime and "XNNPACK" in results[1].runtime


def test_bench_cli_json_and_csv(tiny: dict[str, Path], tmp_path: Path) -> None:
    table = tmp_path / "bench.csv"
    result = CliRunner().invoke(
        cli, ["bench", str(tiny["onnx"]), str(tiny["tflite"]), "--runs", "10", "--json", "--csv", str(table)]
    )
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 and float(rows[0]["p50_ms"]) > 0 and json.loads(rows[0]["host"])["cores"]
    result = CliRunner().invoke(cli, ["bench", str(tiny["onnx"]), "--runs", "5"])
    assert result.exit_code == 0 and "fresh process" in result.stdout


@pytest.mark.parametrize(
    ("model", "device", "code", "message"),
    [
        ("tflite", "coral-usb", 5, "edgetpu delegate cannot be loaded: libedgetpu.so.1"),
        ("onnx", "cuda-gpu", 5, "has no CUDAExecutionProvider"),
        ("onnx", "coral-usb", 6, "device coral-usb runs tflite models, not onnx"),
        ("onnx", "no-such-board", 3, "unknown device 'no-such-board'"),
    ],
)
def test_missing_accelerators_are_errors_not_fallbacks(
    tiny: dict[str, Path], model: str, device: str, code: int, message: str
) -> None:
    result = CliRunner().invoke(cli, ["bench", str(tiny[model]), "--device", device, "--runs", "3"])
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if code == 5:
        assert "--allow-fallback" in result.stderr


def test_allow_fallback_says_what_ran(tiny: dict[str, Path]) -> None:
    for model, device in (("tflite", "coral-usb"), ("onnx", "cuda-gpu")):
        results = bench_models([tiny[model]], BenchSettings(device=device, runs=3, allow_fallback=True))
        assert "[fallback:" in results[0].runtime and "unavailable" in results[0].runtime
    # printed as it is (rich markup once swallowed the bracketed note)
    args = ["bench", str(tiny["tflite"]), "--device", "coral-usb", "--allow-fallback", "--runs", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "[fallback: edgetpu unavailable, ran on the CPU]" in result.stdout


def test_a_provider_that_failed_to_start_is_an_error(tiny: dict[str, Path]) -> None:
    """onnxruntime retries on the CPU when a requested provider fails to start; edgekit reports it.
    (No GPU here: the real session below ran on the CPU, and is checked as if CUDA had been asked for.)"""
    from edgekit.artifact import read_artifact
    from edgekit.errors import DeviceUnavailable
    from edgekit.runtimes import open_runner

    with open_runner(read_artifact(tiny["onnx"])) as runner:
        with pytest.raises(DeviceUnavailable, match="could not start CUDAExecutionProvider"):
            runner._refuse_silent_fallback(["CUDAExecutionProvider", "CPUExecutionProvider"], False)
        runner._refuse_silent_fallback(["CUDAExecutionProvider", "CPUExecutionProvider"], True)
        assert "CUDAExecutionProvider failed to start" in runner.describe()


def test_profiles_are_data(tmp_path: Path) -> None:
    names = set(builtin_profiles())
    assert {"cpu", "rpi4", "rpi5", "coral-usb", "coral-devboard", "jetson-orin-nano", "cuda-gpu"} <= names
    coral = load_profile("coral-usb")
    assert coral.delegates == ["edgetpu"] and coral.constraints["quantization"] == "full-int8"
    assert all(ref["source"].startswith("https://") and ref["latency_ms"] > 0 for ref in coral.reference)
    custom = tmp_path / "myboard.yaml"
    custom.write_text("name: myboard\nruntime: onnxruntime\nthreads: 2\n")
    assert load_profile(str(custom)).threads == 2
    with pytest.raises(BadInput, match=r"unknown keys \['delegats'\]"):
        DeviceProfile.from_yaml("name: x\ndelegats: [edgetpu]\n", "typo.yaml")
    with pytest.raises(BadInput, match="not valid YAML"):
        DeviceProfile.from_yaml("name: x\ninstall: a: b\n", "bad.yaml")


def test_devices_command_lists_profiles_and_host() -> None:
    result = CliRunner().invoke(cli, ["devices", "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and len(data["profiles"]) >= 7
    assert data["host"]["cores"] >= 1 and "CPUExecutionProvider" in data["host"]["onnxruntime_providers"]
    assert data["host"]["edgetpu_library"] is None  # no Edge TPU runtime on this machine
