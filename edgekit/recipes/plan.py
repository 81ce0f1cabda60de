"""The plan checked against the device before anything runs: the model a recipe ends with must be one
the device profile's runtime runs, in the precision and IO types its constraints demand (an Edge TPU
recipe that ends in ONNX or float TFLite would otherwise fail at its last step, after minutes)."""

from __future__ import annotations

import dataclasses

from edgekit.devices import DeviceProfile
from edgekit.formats import Format, device_runtimes


@dataclasses.dataclass
class Deployed:
    """The last model-producing step of a recipe: its number, name, config and the format it writes."""

    index: int
    name: str
    config: object  # the producing step's typed config
    format: Format


def plan_problems(profile: DeviceProfile, deployed: Deployed | None) -> list[str]:
    """What keeps the recipe's final model from running on `profile`, each naming the step."""
    if deployed is None:
        return []
    step = f"step {deployed.index + 1} ({deployed.name})"
    needed = device_runtimes().get(profile.runtime)
    if (profile.constraints or {}).get("quantization") == "full-int8":
        problem = _full_int8_problem(profile, deployed, step, needed)
        return [problem] if problem else []
    if needed is not None and deployed.format is not needed:
        return [f"{profile.name} runs {needed.value} models; {step} produces {deployed.format.value}"]
    return []


def _full_int8_problem(profile: DeviceProfile, deployed: Deployed, step: str, needed: Format | None) -> str | None:
    """A full-int8 device (the Edge TPU) needs the recipe to end in int8 quantization with integer IO,
    in its runtime's format: one message for whatever is off."""
    io_dtypes = list(profile.constraints.get("io_dtype") or ["int8"])
    fmt = needed or deployed.format
    wrong_format = needed is not None and deployed.format is not needed
    if deployed.name not in ("quantize", "convert", "prune") and not wrong_format:
        return None  # e.g. compile of the source model itself: its precision is the source's, unknown here
    scheme = getattr(deployed.config, "scheme", None) if deployed.name == "quantize" else None
    io_dtype = getattr(deployed.config, "io_dtype", "float")
    if scheme == "int8" and io_dtype in io_dtypes and not wrong_format:
        return None
    made = f"int8 with {io_dtype} IO" if scheme == "int8" else (scheme or "a float model")
    return (
        f"{profile.name} needs full-int8 {fmt.value} models with {'/'.join(io_dtypes)} IO; {step} produces "
        f"{made}{f' as {deployed.format.value}' if wrong_format else ''}: end with quantize: "
        f"{{scheme: int8, format: {fmt.value}, io_dtype: {io_dtypes[0]}}}"
    )
