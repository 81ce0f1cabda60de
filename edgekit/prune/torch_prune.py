"""PyTorch pruning: structured channel pruning with torch-pruning's dependency graph (channel counts
rounded to a multiple), or global unstructured magnitude pruning; then recovery and a file of the
input's kind (.pt2, TorchScript or state dict)."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import ModelArtifact, TensorSpec
from edgekit.errors import BadInput, MissingDependency
from edgekit.formats import Format
from edgekit.fsutil import atomic_path
from edgekit.loaders import LoadOptions
from edgekit.loaders.torch_loader import build_arch, exported_program, import_torch, load_torch_model, load_weights
from edgekit.prune import LayerChange, PruneOptions, PruneReport
from edgekit.prune.common import deflated_size, recover, write_sidecar
from edgekit.prune.recover import DEFAULT_LR, load_images, looks_like_probabilities, split_data

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from edgekit.jsontypes import Json


def prune(artifact: ModelArtifact, options: PruneOptions, load: LoadOptions, progress: Callable[[str], None]):
    """Prune the torch model described by `artifact` as `options` say; write it and its sidecar."""
    torch = import_torch()
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    model, arch, kind = trainable_module(artifact, load)
    example = torch.zeros(_input_shape(artifact, load))
    if not artifact.inputs:  # recovery reads images in the model's input shape
        artifact = dataclasses.replace(artifact, inputs=[TensorSpec("input", list(example.shape), layout="NCHW")])
    macs_before, params_before = _macs(model, example), _params(model)
    ignored = ignored_modules(model, options.ignore)
    recovery = _recovery_data(artifact, options, model) if options.recover else None
    before = {name: _channels(m) for name, m in _prunable(model)}
    progress(f"pruning {options.amount:.0%} of {'channels' if options.method == 'structured' else 'weights'}")
    if options.method == "structured":
        structured_prune(model, example, options, ignored, recovery)
    else:
        unstructured_prune(model, options.amount, ignored)
    report = PruneReport(
        artifact.path, options.output, options, macs_before, _macs(model, example), params_before, _params(model), []
    )
    if recovery is not None:
        recover(report, TorchTrainable(model, options.recover.lr or DEFAULT_LR, recovery), recovery, options, progress)
    if options.method == "unstructured":
        _make_permanent(model)
    report.layers = [_layer_change(name, module, before[name]) for name, module in _prunable(model)]
    progress(f"writing {options.output.name}")
    _save_like_input(model.eval(), kind, example, options.output)
    if options.method == "unstructured":
        report.zipped_before, report.zipped_after = deflated_size(artifact.path), deflated_size(options.output)
    report.seconds = time.perf_counter() - started
    write_sidecar(artifact, report, Format.PT2 if kind is None else kind, arch, list(example.shape))
    return report


def trainable_module(artifact: ModelArtifact, load: LoadOptions) -> tuple[torch.nn.Module, Json | None, Format | None]:
    """An nn.Module with the file's weights, the architecture that built it, and the kind to write back.

    .pt2 and TorchScript files hold a traced graph, not editable layers, so their weights are loaded
    into the architecture (from --arch or the sidecar); a .pt2 without one has its layers rebuilt from
    the graph itself (edgekit.prune.lift). The kind is None for a pickled module,
    which is written back as .pt2 rather than as another pickle.
    """
    torch = import_torch()
    recorded = artifact.arch or {}
    arch = load.arch or recorded.get("callable")
    kwargs = load.arch_kwargs if load.arch else dict(recorded.get("kwargs") or {})
    if artifact.format is Format.TORCH_CHECKPOINT:
        model = load_torch_model(artifact.path, artifact.format, load)
        return (
            model,
            ({"callable": arch, "kwargs": kwargs} if arch else None),
            (Format.TORCH_CHECKPOINT if arch else None),
        )
    if arch is None and artifact.format is Format.PT2:
        from edgekit.prune.lift import lift_exported_program

        return lift_exported_program(artifact.path).eval(), None, Format.PT2  # no code: layers from the graph
    if arch is None:
        raise BadInput(
            f"{artifact.path} is {artifact.format.value}: a traced graph without editable layers",
            fix="pass --arch package.module:callable (and --arch-kwarg) that builds the network",
        )
    if artifact.format is Format.PT2:
        state = dict(exported_program(artifact.path).state_dict)
    else:
        state = torch.jit.load(str(artifact.path), map_location="cpu").state_dict()
    model = build_arch(arch, kwargs)
    load_weights(model, state, artifact.path, arch)
    return model.eval(), {"callable": arch, "kwargs": kwargs}, artifact.format


def ignored_modules(model: torch.nn.Module, names: list[str]) -> list[torch.nn.Module]:
    """Modules kept whole: those named (or under a named prefix), else the last Linear/Conv (the head)."""
    torch = import_torch()
    modules = dict(model.named_modules())
    if not names:
        layers = [m for m in modules.values() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        return layers[-1:]
    kept = []
    for name in names:
        found = [m for key, m in modules.items() if key == name or key.startswith(f"{name}.")]
        if not found:
            examples = ", ".join(n for n, _ in _prunable(model)[:4])
            raise BadInput(f"--ignore {name!r} names no layer of this model", fix=f"layer names look like {examples}")
        kept.extend(found)
    return kept


def structured_prune(
    model: torch.nn.Module, example: torch.Tensor, options: PruneOptions, ignored: list[torch.nn.Module], recovery: Any
) -> None:
    """Remove output channels (and everything that depends on them) with torch-pruning's MetaPruner."""
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise MissingDependency("structured pruning of PyTorch models", "torch-pruning", "torch") from exc
    importance = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.TaylorImportance(),
    }[options.importance]()
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=importance,
            pruning_ratio=options.amount,
            ignored_layers=ignored,
            round_to=options.round_to,
        )
    except Exception as exc:
        raise BadInput(f"torch-pruning could not trace this model ({exc})", fix="try --unstructured") from exc
    if not any(
        True for _ in pruner.DG.get_all_groups(ignored_layers=ignored, root_module_types=pruner.root_module_types)
    ):
        raise BadInput("this model has no prunable channels outside the ignored layers", fix="check --ignore")
    if options.importance == "taylor":
        _taylor_gradients(model, recovery)
    pruner.step()
    model.zero_grad(set_to_none=True)


def _taylor_gradients(model: torch.nn.Module, recovery: Any) -> None:
    torch = import_torch()
    model.zero_grad()
    inputs = torch.from_numpy(recovery.train[:64])
    outputs = model(inputs)
    torch.nn.functional.cross_entropy(outputs, outputs.argmax(dim=1)).backward()


def unstructured_prune(model: torch.nn.Module, amount: float, ignored: list[torch.nn.Module]) -> None:
    """Zero the `amount` smallest-magnitude weights across all Conv2d/Linear layers (global L1)."""
    import_torch()
    from torch.nn.utils import prune as torch_prune

    targets = [(m, "weight") for _, m in _prunable(model) if not any(m is i for i in ignored)]
    if not targets:
        raise BadInput("this model has no Conv2d or Linear layers to prune", fix="check --ignore")
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)


def _make_permanent(model: torch.nn.Module) -> None:
    from torch.nn.utils import prune as torch_prune

    for _, module in _prunable(model):
        if torch_prune.is_pruned(module) and hasattr(module, "weight_orig"):
            torch_prune.remove(module, "weight")


class TorchTrainable:
    """The recovery loop's view of a torch model."""

    def __init__(self, model: torch.nn.Module, lr: float, recovery: Any) -> None:
        self.torch = import_torch()
        self.model = model
        self.near_original = False  # realign re-estimates norm statistics; it does not refit
        self.optimizer = self.torch.optim.Adam(model.parameters(), lr=lr)
        self.probabilities = bool(recovery and looks_like_probabilities(recovery.teacher_holdout))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Outputs for a batch, in eval mode."""
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(inputs))).numpy()

    def train_batch(
        self, inputs: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None, temperature: float
    ) -> float:
        """One Adam step on KL to the teacher's softened outputs, averaged with cross-entropy on labels."""
        functional = self.torch.nn.functional
        self.model.train()
        outputs = self._logits(self.model(self.torch.from_numpy(inputs)))
        soft_teacher = functional.log_softmax(self._logits(self.torch.from_numpy(teacher)) / temperature, dim=1)
        student = functional.log_softmax(outputs / temperature, dim=1)
        loss = functional.kl_div(student, soft_teacher, log_target=True, reduction="batchmean") * temperature**2
        if labels is not None:
            loss = 0.5 * loss + 0.5 * functional.cross_entropy(outputs, self.torch.from_numpy(labels).long())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def set_learning_rate(self, lr: float) -> None:
        """Set Adam's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _logits(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.torch.log(outputs.clamp_min(1e-8)) if self.probabilities else outputs

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A deep copy of the state dict."""
        return copy.deepcopy(self.model.state_dict())

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        """Load a snapshot back."""
        self.model.load_state_dict(state)

    def realign(self, inputs: np.ndarray, batch_size: int) -> str:
        """Reset BatchNorm running statistics and recompute them as a plain average over `inputs`."""
        norms = [m for m in self.model.modules() if isinstance(m, self.torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average
        self.model.train()
        with self.torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                self.model(self.torch.from_numpy(inputs[start : start + batch_size]))
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        self.model.eval()
        return f"norm statistics ({len(inputs)} images)"


def _recovery_data(artifact: ModelArtifact, options: PruneOptions, model: torch.nn.Module) -> Any:
    images, labels, spec = load_images(artifact, options.recover, options.preprocess, options.seed, options.labels)
    teacher = TorchTrainable(copy.deepcopy(model), 1e-3, None)
    return split_data(
        images, labels, lambda x: _batched(teacher.predict, x), spec.layout, options.recover, options.seed
    )


def _batched(fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(inputs[i : i + 32]) for i in range(0, len(inputs), 32)])


def _save_like_input(model: torch.nn.Module, kind: Format | None, example: torch.Tensor, output: Path) -> None:
    torch = import_torch()
    with atomic_path(output) as partial:
        if kind is Format.TORCHSCRIPT:
            torch.jit.trace(model, (example,)).save(str(partial))
        elif kind is Format.TORCH_CHECKPOINT:
            torch.save(model.state_dict(), str(partial))
        else:
            torch.export.save(torch.export.export(model, (example,)), str(partial))


def _input_shape(artifact: ModelArtifact, load: LoadOptions) -> list[int]:
    shape = list(load.input_shape or (artifact.inputs[0].shape if artifact.inputs else []))
    if not shape and artifact.format is Format.PT2:  # an exported program records its example's shape
        program = exported_program(artifact.path)
        inputs = _user_inputs(program)
        values = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in inputs]
        shape = list(values[0].shape) if values and values[0] is not None else []
    if not shape or any(d is None for d in shape[1:]):
        raise BadInput(f"{artifact.path.name} records no full input shape", fix="pass --input-shape 1,3,224,224")
    return [1, *shape[1:]]


def _user_inputs(program: torch.export.ExportedProgram) -> set[str]:
    """The exported program's placeholders that are inputs, not lifted weights or buffers."""
    from torch.export.graph_signature import InputKind

    signature = program.graph_signature
    return {spec.arg.name for spec in signature.input_specs if spec.kind == InputKind.USER_INPUT}


def _prunable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    torch = import_torch()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def _channels(module: torch.nn.Module) -> int:
    return int(module.weight.shape[0])


def _layer_change(name: str, module: torch.nn.Module, before: int) -> LayerChange:
    weight = module.weight.detach()
    return LayerChange(
        name, type(module).__name__, before, _channels(module), float((weight == 0).float().mean().item())
    )


def _macs(model: torch.nn.Module, example: torch.Tensor) -> int:
    from edgekit.inspectors.framework_info import torch_macs

    torch = import_torch()
    model.eval()
    with torch.no_grad():
        return torch_macs(model, lambda: model(example)) or 0


def _params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
