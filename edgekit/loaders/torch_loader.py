"""Load PyTorch models: torch.export programs, TorchScript, and state dicts with an architecture."""

from __future__ import annotations

import importlib
import io
import pickletools
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput, MissingDependency, first_line
from edgekit.formats import Format
from edgekit.loaders import LoadOptions

if TYPE_CHECKING:
    import torch

    from edgekit.jsontypes import Json

# Globals that plain tensor checkpoints reference; anything else is listed in the refusal message.
_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "numpy.", "_codecs.encode")


def import_torch():
    """Import torch or raise MissingDependency."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency("loading a PyTorch model", "PyTorch", "torch") from exc
    return torch


def load_torch_model(path: Path, fmt: Format, options: LoadOptions) -> torch.nn.Module:
    """Return an eval-mode callable model: an ExportedProgram module, ScriptModule or nn.Module."""
    torch = import_torch()
    try:
        if fmt is Format.PT2:
            return torch.export.load(str(path)).module()
        if fmt is Format.TORCHSCRIPT:
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise BadInput(f"{path} could not be loaded as {fmt.value} ({first_line(exc)})", fix="re-export it") from exc
    return _load_checkpoint(path, options)


def exported_program(path: Path):
    """The torch.export ExportedProgram stored in a .pt2 file."""
    torch = import_torch()
    try:
        return torch.export.load(str(path))
    except (RuntimeError, ValueError, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise BadInput(f"{path} could not be loaded as pt2 ({first_line(exc)})", fix="re-export it") from exc


def _load_checkpoint(path: Path, options: LoadOptions) -> torch.nn.Module:
    torch = import_torch()
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "weights_only" not in str(exc) and "Unsupported global" not in str(exc):
            raise BadInput(
                f"{path} could not be read as a PyTorch checkpoint ({first_line(exc)})", fix="re-save it"
            ) from exc
        return _load_pickled_module(path, options)
    state = _unwrap_state_dict(state, path)
    arch, kwargs, pruned = _recorded_arch(path, options)
    if arch is None:
        raise BadInput(
            f"{path} holds only weights (a state dict)",
            fix="pass --arch package.module:callable that builds the network (and --arch-kwarg key=value)",
        )
    model = build_arch(arch, kwargs)
    if pruned:
        fit_to_state_dict(model, state)
    load_weights(model, state, path, arch)
    return model.eval()


def _recorded_arch(path: Path, options: LoadOptions) -> tuple[str | None, Json, bool]:
    """--arch if given, else the architecture the sidecar records; and whether the file was pruned."""
    from edgekit.artifact import read_artifact

    artifact = read_artifact(path)
    pruned = any(entry.get("step") == "prune" for entry in artifact.lineage)
    if options.arch is not None:
        return options.arch, options.arch_kwargs, pruned
    recorded = artifact.arch or {}
    return recorded.get("callable"), dict(recorded.get("kwargs") or {}), pruned


def fit_to_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Shrink Conv2d, Linear and BatchNorm layers to the (pruned) shapes stored in `state`."""
    torch = import_torch()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        weight = state.get(f"{prefix}weight")
        if weight is None or not hasattr(module, "weight") or module.weight is None:
            continue
        if tuple(weight.shape) == tuple(module.weight.shape):
            continue
        if isinstance(module, torch.nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            module.out_channels = int(weight.shape[0])
            module.groups = int(weight.shape[0]) if depthwise else module.groups
            module.in_channels = int(weight.shape[1]) * module.groups
        elif isinstance(module, torch.nn.Linear):
            module.out_features, module.in_features = int(weight.shape[0]), int(weight.shape[1])
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.num_features = int(weight.shape[0])
        else:
            continue
        for key, _ in list(module.named_parameters(recurse=False)):
            if f"{prefix}{key}" in state:
                setattr(module, key, torch.nn.Parameter(torch.empty_like(state[f"{prefix}{key}"])))
        for key, value in list(module.named_buffers(recurse=False)):
            if value is not None and f"{prefix}{key}" in state:
                module._buffers[key] = torch.empty_like(state[f"{prefix}{key}"])


def _unwrap_state_dict(state: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state:
        raise BadInput(f"{path} is not a state dict (found {type(state).__name__})", fix="save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_arch(arch: str, kwargs: Json) -> torch.nn.Module:
    """Call `package.module:callable` (the callable may be dotted, e.g. Class.from_name)."""
    module_name, _, attr_path = arch.partition(":")
    if not module_name or not attr_path:
        raise BadInput(f"--arch {arch!r} is not of the form package.module:callable", fix="e.g. mypkg.nets:resnet18")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInput(
            f"--arch {arch!r}: cannot import {module_name} ({exc})", fix="install the package or fix the name"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise BadInput(
                f"--arch {arch!r}: {module_name} has no attribute {attr_path}", fix="check the callable's name"
            )
        target = getattr(target, part)
    try:
        return target(**kwargs)
    except TypeError as exc:
        raise BadInput(f"--arch {arch!r} could not be called with {kwargs} ({exc})", fix="check --arch-kwarg") from exc


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load `state` into `model`, raising BadInput that names missing, unexpected or mis-sized weights."""
    fix = "check the architecture and its --arch-kwarg values"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # size mismatches raise even with strict=False
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), first_line(exc))
        raise BadInput(f"weights in {path} do not fit --arch {arch}: {detail[:250]}", fix=fix) from exc
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise BadInput(
            f"weights in {path} do not fit --arch {arch}: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            fix=fix,
        )


def _load_pickled_module(path: Path, options: LoadOptions) -> torch.nn.Module:
    imports = pickle_imports(path)
    if not options.trust_pickle:
        names = ", ".join(sorted(imports)[:4]) or "unknown code"
        raise BadInput(
            f"{path} is a pickled Python object whose loading would import and run {names}",
            fix="re-save it as torch.export (.pt2), TorchScript or a state dict, or pass --trust-pickle "
            "if you trust where it came from",
        )
    torch = import_torch()
    model = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{path} unpickled to a {type(model).__name__}, not a torch.nn.Module", fix="save the module")
    return model.eval()


def pickle_imports(path: Path) -> set[str]:
    """Modules and names a torch checkpoint's pickle would import, read without unpickling it."""
    payloads: list[bytes] = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            payloads = [archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")]
    else:
        payloads = [path.read_bytes()]
    found: set[str] = set()
    for payload in payloads:
        found |= _globals_in(payload)
    return {name for name in found if not name.startswith(_SAFE_GLOBAL_PREFIXES)}


def _globals_in(payload: bytes) -> set[str]:
    found: set[str] = set()
    strings: list[str] = []
    stream = io.BytesIO(payload)
    while stream.tell() < len(payload):
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name == "GLOBAL":
                    found.add(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - stop at the first byte that is not a pickle opcode
            break
    return found
