"""Per-CPU int8 presets for onnxruntime, each with the reason (measured on the machines named).

x86 without VNNI multiplies uint8 x int8 with VPMADDUBSW, whose 16-bit sums saturate; 7-bit weights
(reduce_range) avoid that. On a 2-core AMD EPYC (AVX2, no VNNI) EfficientNet-Lite0 measured:
S8S8 QDQ 7.2 ms and 68% top-1 agreement; U8S8 4.1 ms, 68%; U8S8 + reduce_range 4.2 ms, 79%
(fp32: 7.8 ms). With VNNI there is no saturation, so full 8-bit weights keep more precision.
ARM64 (Raspberry Pi) runs signed int8 dot products natively (onnxruntime's S8S8 default).
"""

from __future__ import annotations

import dataclasses
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


PRESETS = {
    "x86-avx2": CpuPreset(
        "x86-avx2",
        "uint8",
        "int8",
        True,
        "AVX2 without VNNI: U8S8 kernels are fastest; 7-bit weights avoid VPMADDUBSW saturation",
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


def resolve_preset(name: str | None) -> CpuPreset:
    """'auto' (or None) -> the host's preset; otherwise a named target CPU (quantize on a PC for a Pi: arm64)."""
    if name in (None, "auto"):
        return host_preset()
    if name not in PRESETS:
        raise BadInput(f"unknown CPU preset {name!r}", fix=f"use auto or one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())
