"""Device profiles (YAML, one file per board or accelerator) and what this host actually has."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import platform
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import BadInput, did_you_mean

if TYPE_CHECKING:
    from edgekit.jsontypes import Json


@dataclasses.dataclass
class DeviceProfile:
    """One board or accelerator: runtime, delegates or providers, threads, constraints, host needs."""

    name: str
    description: str = ""
    runtime: str = "any"  # any, tflite, onnxruntime
    delegates: list[str] = dataclasses.field(default_factory=list)  # tflite: xnnpack, edgetpu, gpu
    providers: list[str] = dataclasses.field(default_factory=lambda: ["CPUExecutionProvider"])
    threads: int | None = None
    quantize_cpu: str | None = None  # edgekit.quantize.cpu preset for this device
    constraints: Json = dataclasses.field(default_factory=dict)
    host: Json = dataclasses.field(default_factory=dict)
    install: str = ""
    notes: str = ""
    reference: list[Json] = dataclasses.field(default_factory=list)  # published figures + source
    emulate: dict[str, str] | None = None  # {cpu: QEMU CPU model, arch: arm64, debian: bookworm} (edgekit.board)

    @property
    def cpu_only(self) -> bool:
        """True when the profile asks for no accelerator: only the CPU's XNNPACK or onnxruntime CPU provider."""
        return set(self.delegates) <= {"xnnpack"} and set(self.providers) <= {"CPUExecutionProvider"}

    @classmethod
    def from_yaml(cls, text: str, origin: str) -> DeviceProfile:
        """Parse and check a profile; unknown keys and wrong types are errors."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadInput(f"device profile {origin} is not valid YAML ({exc})", fix="fix the file") from exc
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BadInput(f"device profile {origin} needs a mapping with a 'name'", fix="see the profiles in devices/")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInput(
                f"device profile {origin} has unknown keys {unknown}", fix=f"keys: {', '.join(sorted(known))}"
            )
        from edgekit.formats import device_runtimes

        runtimes = ["any", *device_runtimes()]
        if data.get("runtime", "any") not in runtimes:
            raise BadInput(f"device profile {origin}: runtime must be one of {', '.join(runtimes)}", fix="fix the file")
        return cls(**{k: v for k, v in data.items() if v is not None or k == "threads"})


def builtin_profiles() -> dict[str, DeviceProfile]:
    """The profiles shipped with edgekit, by name."""
    folder = resources.files("edgekit.device_profiles")  # the top-level devices/ folder (see pyproject.toml)
    profiles = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            profile = DeviceProfile.from_yaml(entry.read_text(), entry.name)
            profiles[profile.name] = profile
    return profiles


def load_profile(name_or_path: str) -> DeviceProfile:
    """A built-in profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise BadInput(f"device profile {path} does not exist", fix="check the path")
        return DeviceProfile.from_yaml(path.read_text(), str(path))
    profiles = builtin_profiles()
    if name_or_path not in profiles:
        hint = did_you_mean(name_or_path, list(profiles))
        raise BadInput(
            f"unknown device {name_or_path!r}", fix=f"{hint}use one of {', '.join(profiles)} or a .yaml file"
        )
    return profiles[name_or_path]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset), not the
    machine's count that os.cpu_count() gives, which oversubscribes a pinned process."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def host_facts() -> Json:
    """What this machine has: CPU, cores, runtimes and versions, providers, delegates, cameras, governor."""
    facts: Json = {
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cameras": sorted(glob.glob("/dev/video*")),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "temperature_c": _temperature(),
        "runtimes": {},
        "onnxruntime_providers": [],
        "edgetpu_library": _find_library("libedgetpu.so.1"),
        "emulated": emulated_board(),
    }
    for package, module in (
        ("onnxruntime", "onnxruntime"),
        ("ai-edge-litert", "ai_edge_litert"),
        ("tflite-runtime", "tflite_runtime"),
        ("tensorflow", "tensorflow"),
        ("torch", "torch"),
    ):
        if importlib.util.find_spec(module) is not None:
            facts["runtimes"][package] = package_version(package)
    if "onnxruntime" in facts["runtimes"]:
        import onnxruntime

        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return facts


def emulated_board() -> str | None:
    """On an edgekit emulated board (edgekit.board), what emulates it: its timings are not the device's."""
    mark = _read("/etc/edgekit-emulated")
    if mark is None:
        return None
    return f"{os.environ.get('QEMU_CPU', 'default CPU')} under {mark}"


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _temperature() -> float | None:
    value = _read("/sys/class/thermal/thermal_zone0/temp")
    try:
        return round(int(value) / 1000, 1) if value else None
    except ValueError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _find_library(name: str) -> str | None:
    import ctypes.util

    for folder in ("/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib"):
        if Path(folder, name).exists():
            return str(Path(folder, name))
    return ctypes.util.find_library(name.removeprefix("lib").split(".so")[0])


def package_version(package: str) -> str:
    """An installed distribution's version ('tensorflow' also finds tensorflow-cpu), else 'unknown'."""
    from importlib import metadata

    for name in (package, f"{package}-cpu"):  # TensorFlow ships as tensorflow or tensorflow-cpu
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"
