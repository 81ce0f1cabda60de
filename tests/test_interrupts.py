"""Interrupting a long conversion or quantization with SIGINT or SIGKILL leaves no file that looks
like a finished model, and a re-run succeeds (and sweeps the temporary files a SIGKILL left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.artifact import read_artifact
from edgekit.fsutil import atomic_path, remove_stale_partials

EDGEKIT = str(Path(sys.executable).parent / "edgekit")


def _start(args: list[str]) -> subprocess.Popen:
    # Ctrl-C's default action in the child, whatever this test runner inherited: a shell script's
    # background job (`pytest &`) runs with SIGINT ignored, and exec passes that on.
    return subprocess.Popen(
        [EDGEKIT, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # a crash prints where it happened
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt_when_busy(process: subprocess.Popen, folder: Path, sig: int, delay: float) -> None:
    """Wait `delay` seconds (or until a temporary output appears), then signal the process."""
    deadline = time.time() + delay
    while time.time() < deadline and process.poll() is None:
        if any("partial" in p.name for p in folder.iterdir()):
            break
        time.sleep(0.01)
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("command", ["convert", "quantize"])
def test_interrupted_run_leaves_no_model_and_rerun_succeeds(
    torch_models: dict[str, Path], photos_dir: Path, tmp_path: Path, sig: int, command: str
) -> None:
    out = tmp_path / ("m.tflite" if command == "convert" else "m.int8.onnx")
    args = (
        ["convert", str(torch_models["pt2"]), "--to", "tflite", "-o", str(out), "--check-images", "4"]
        if command == "convert"
        else ["quantize", str(torch_models["pt2"]), "--calib", str(photos_dir), "-o", str(out), "--val-count", "8"]
    )
    process = _start(args)
    _interrupt_when_busy(process, tmp_path, sig, delay=4.0)  # mid-way: the whole run takes 8-15 s
    assert process.returncode != 0, "the signal came after the run had finished, or was ignored"
    if sig == signal.SIGINT:
        stderr = process.stderr.read()
        assert process.returncode == 130 and "interrupted" in stderr, stderr[-3000:]
        assert not any("partial" in p.name for p in tmp_path.iterdir()), "SIGINT cleans up its temporary file"
    assert not out.exists(), "no file that looks like a finished model"
    done = subprocess.run([EDGEKIT, *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert read_artifact(out).format.value in ("tflite", "onnx")
    assert not any("partial" in p.name for p in tmp_path.iterdir()), "the re-run swept what SIGKILL left"


def test_stale_partials_of_dead_processes_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".model.{dead.stdout.strip()}.abc.partial.onnx"
    stale.write_bytes(b"half")
    with atomic_path(target) as partial:
        alive = partial  # this process's own temporary file: alive, so never swept
        partial.write_bytes(b"done")
        assert remove_stale_partials(target) == [] and alive.exists()
    assert not stale.exists() and target.read_bytes() == b"done"


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test, as a program started from a terminal has it: a
    pytest-xdist worker (and `pytest &`) runs with SIGINT ignored, where deferred_interrupt rightly
    does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint_handler")
def test_ctrl_c_in_a_framework_call_is_held_until_it_returns() -> None:
    """One Ctrl-C inside a framework call lets the call finish and is raised after it (the crash was a
    KeyboardInterrupt unwinding through TensorFlow's or torch's own code); a second one stops at
    once; Python's handler is back afterwards."""
    from edgekit.interrupts import deferred_interrupt

    finished = False
    with pytest.raises(KeyboardInterrupt), deferred_interrupt("a framework call"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here: it must not raise
        finished = True
    assert finished and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    reached = False
    with pytest.raises(KeyboardInterrupt), deferred_interrupt("a framework call"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached = True
    assert not reached, "the second Ctrl-C stops at once"
