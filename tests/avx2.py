"""Running code on AVX2 int8 kernels from any x86 Linux host: a stand-in for an AVX2 CPU, named as such.

On an AVX2 host that is the host itself. On an AVX-512 / VNNI host, benchmarks/cpuid_avx2.c (built
here with the system C compiler) is preloaded so that CPUID reports AVX2 only, and onnxruntime, XNNPACK
and numpy then run their real AVX2 kernels. Hosts that can do neither (ARM, no CPUID faulting, no
compiler) skip the tests that need it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.quantize.cpu import host_preset, kernel_flags

ROOT = Path(__file__).resolve().parents[1]


def avx2_env(folder: Path) -> dict[str, str]:
    """Environment for a subprocess that runs AVX2 kernels; skips the calling test where none can."""
    env = dict(os.environ)
    if host_preset().name == "x86-avx2":
        return env
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("AVX2 kernels need an x86-64 host")
    if "cpuid_fault" not in kernel_flags() or shutil.which("cc") is None:
        pytest.skip("masking CPUID needs CPUID faulting and a C compiler")
    shim = folder / "cpuid_avx2.so"
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(ROOT / "benchmarks" / "cpuid_avx2.c")], check=True
    )
    env["LD_PRELOAD"] = str(shim)
    env.pop("PYTHONFAULTHANDLER", None)  # its SIGSEGV handler would take the shim's CPUID traps
    return env


def run_on_avx2(folder: Path, module: str, *args: str) -> dict:
    """Run `python -m module args` on AVX2 kernels; its last stdout line, parsed as JSON."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=avx2_env(folder),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
