"""`edgekit bench`: latency and memory of models on a device, each model in a fresh process.

Several onnxruntime sessions in one process slow each other through spinning threads, so every
model is measured by a separate worker (`python -m edgekit.bench`), which prints one JSON result.
Warm-up runs, then at least `runs` timed runs (and at least `duration` seconds when given);
p50/p90/p99/mean/std, throughput, load time, first inference, peak RSS, with the host facts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import DeviceUnavailable, EdgekitError
from edgekit.fsutil import size_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgekit.artifact import TensorSpec
    from edgekit.jsontypes import Json
    from edgekit.runtimes import Runner


@dataclasses.dataclass
class BenchSettings:
    """How to measure."""

    device: str = "cpu"
    threads: int | None = None
    runs: int = 100
    warmup: int = 10
    duration: float | None = None
    allow_fallback: bool = False


@dataclasses.dataclass
class BenchResult:
    """One model's numbers, never separated from where they were measured."""

    model: str
    format: str
    precision: str | None
    size_bytes: int
    runtime: str
    device: str
    threads: int | None
    load_ms: float
    first_ms: float
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput_fps: float
    peak_rss_mb: float
    host: Json


def measure(model: Path, settings: BenchSettings) -> BenchResult:
    """Measure one model in this process (the worker's job)."""
    from edgekit.artifact import read_artifact
    from edgekit.devices import host_facts, load_profile, usable_cores
    from edgekit.runtimes import open_runner

    profile = load_profile(settings.device)
    artifact = read_artifact(model)
    # A profile's thread count is its board's core count; more threads than this host has only thrash.
    threads = settings.threads or (min(profile.threads, usable_cores()) if profile.threads else None)
    started = time.perf_counter()
    runner = open_runner(artifact, threads=threads, device=profile, allow_fallback=settings.allow_fallback)
    load_ms = (time.perf_counter() - started) * 1e3
    feeds = [_random_input(spec) for spec in runner.inputs()]
    started = time.perf_counter()
    runner.infer(feeds)
    first_ms = (time.perf_counter() - started) * 1e3
    for _ in range(settings.warmup):
        runner.infer(feeds)
    times = _timed_runs(runner, feeds, settings)
    result = BenchResult(
        model=str(model),
        format=artifact.format.value,
        precision=artifact.precision,
        size_bytes=size_of(model),
        runtime=runner.describe(),
        device=profile.name,
        threads=threads,
        load_ms=load_ms,
        first_ms=first_ms,
        runs=len(times),
        p50_ms=float(np.percentile(times, 50)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=float(np.mean(times)),
        std_ms=float(np.std(times)),
        throughput_fps=1000 / float(np.mean(times)),
        peak_rss_mb=_peak_rss_mb(),
        host=host_facts(),
    )
    runner.close()
    return result


def _timed_runs(runner: Runner, feeds: list[np.ndarray], settings: BenchSettings) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + (settings.duration or 0)
    while len(times) < settings.runs or time.perf_counter() < deadline:
        started = time.perf_counter()
        runner.infer(feeds)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def _random_input(spec: TensorSpec) -> np.ndarray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _peak_rss_mb() -> float:
    # ru_maxrss survives execve, so a worker started from a big parent would report the parent's
    # peak; Linux's VmHWM belongs to this address space only.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1e6  # KiB on Linux, bytes on macOS


def bench_models(
    models: list[Path], settings: BenchSettings, progress: Callable[[str], None] = lambda _: None
) -> list[BenchResult]:
    """Measure each model in a fresh worker process; errors keep their message and exit code."""
    results = []
    for model in models:
        progress(f"benchmarking {model.name} on {settings.device} ({settings.runs} runs)")
        request = json.dumps({"model": str(model), **dataclasses.asdict(settings)})
        results.append(_run_worker([sys.executable, "-m", "edgekit.bench", request]))
    return results


@dataclasses.dataclass
class Remote:
    """A board reached over SSH (key-based, no password prompt), with edgekit installed there."""

    target: str  # user@host
    python: str = "python3"  # the board's Python that has edgekit[pi]
    ssh_options: list[str] = dataclasses.field(default_factory=list)  # e.g. ["Port=2222", "IdentityFile=~/.ssh/pi"]

    def ssh_args(self) -> list[str]:
        """Options shared by ssh and scp."""
        options = ["BatchMode=yes", "ConnectTimeout=10", *self.ssh_options]
        return [arg for option in options for arg in ("-o", option)]


def bench_remote(
    models: list[Path], settings: BenchSettings, remote: Remote, progress: Callable[[str], None] = lambda _: None
) -> list[BenchResult]:
    """Copy each model (and its sidecar) to the board, run the same worker there, bring the JSON back."""
    from edgekit.board import SshFolder, model_files

    with remote_workdir(remote, "edgekit-bench") as workdir:
        results = []
        for model in models:
            progress(f"copying {model.name} to {remote.target}")
            SshFolder(remote, workdir).put(model_files(model))
            progress(f"benchmarking {model.name} on {remote.target} ({settings.device}, {settings.runs} runs)")
            request = json.dumps({"model": f"{workdir}/{model.name}", **dataclasses.asdict(settings)})
            command = f"{shlex.quote(remote.python)} -m edgekit.bench {shlex.quote(request)}"
            result = _run_worker(["ssh", *remote.ssh_args(), remote.target, command])
            result.model = f"{remote.target}:{model.name}"
            results.append(result)
        return results


@contextlib.contextmanager
def remote_workdir(remote: Remote, prefix: str) -> Iterator[str]:
    """A temporary folder on the board (mktemp -d under /tmp), removed afterwards."""
    workdir = _ssh(remote, f"mktemp -d /tmp/{prefix}-XXXXXX").strip()
    try:
        yield workdir
    finally:
        _ssh(remote, f"rm -rf {shlex.quote(workdir)}", check=False)


def _ssh(remote: Remote, command: str, check: bool = True) -> str:
    return _checked(["ssh", *remote.ssh_args(), remote.target, command], remote, check)


def _checked(command: list[str], remote: Remote, check: bool = True) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise DeviceUnavailable(
            f"cannot reach {remote.target} over SSH ({detail})",
            fix=f"check that `ssh {remote.target}` works without a password prompt and that "
            f'{remote.python} there has edgekit installed (pip install "edgekit[pi]")',
        )
    return done.stdout


def _run_worker(command: list[str]) -> BenchResult:
    """Run a worker (here or over SSH) and turn its one JSON line into a result or an error."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
    payload = json.loads(last) if last.startswith("{") else {}
    if done.returncode != 0 or "error" in payload:
        error = EdgekitError(payload.get("error") or f"benchmark worker failed: {done.stderr.strip()[-300:]}")
        error.exit_code = payload.get("exit_code", 70)
        raise error
    return BenchResult(**payload)


def _worker(argument: str) -> int:
    """Entry point of the worker process: one model, one JSON line on stdout."""
    from edgekit.fsutil import quiet_native_output

    request = json.loads(argument)
    model = Path(request.pop("model"))
    try:
        with quiet_native_output():
            result = measure(model, BenchSettings(**request))
    except EdgekitError as exc:
        print(json.dumps({"error": exc.line(), "exit_code": exc.exit_code}))
        return exc.exit_code
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
