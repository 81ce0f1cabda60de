"""Torch and Keras model facts: parameters, MACs of conv/linear layers, layer histogram."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras
    import torch

    from edgekit.artifact import ModelArtifact
    from edgekit.inspectors import GraphFacts
    from edgekit.runtimes import Runner


def inspect_torch(artifact: ModelArtifact, runner: Runner) -> GraphFacts:
    """Count parameters and MACs of a torch model with forward hooks on Conv and Linear layers."""

    from edgekit.inspectors import GraphFacts

    model = runner.model
    facts = GraphFacts(ops=Counter(type(m).__name__ for m in model.modules() if not list(m.children())))
    for tensor in list(model.parameters()) + [b for b in model.buffers() if b.dtype.is_floating_point]:
        if tensor.dim() > 0:
            facts.weight_dtypes[str(tensor.dtype).removeprefix("torch.")] += tensor.numel()
    facts.params = sum(p.numel() for p in model.parameters())
    facts.macs = torch_macs(model, lambda: runner.infer([np.zeros(runner.inputs()[0].shape, np.float32)]))
    return facts


def torch_macs(model: torch.nn.Module, forward: Callable[[], object]) -> int | None:
    """Multiply-accumulates of the Conv2d and Linear layers during one call of `forward()`."""
    import torch

    macs = [0]

    def count(module: torch.nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            macs[0] += output.numel() * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            macs[0] += output.numel() * module.in_features

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    if not hooks and isinstance(model, torch.fx.GraphModule):
        return graph_macs(model.graph)
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    return macs[0] if hooks else None


def graph_macs(graph: Any) -> int | None:
    """MACs of conv2d/linear calls in a torch.export graph, from the shapes recorded on its nodes."""
    total, found = 0, False
    for node in graph.nodes:
        name = str(node.target)
        if node.op != "call_function" or not any(op in name for op in ("conv2d", "convolution", "linear")):
            continue
        output, weight = node.meta.get("val"), getattr(node.args[1], "meta", {}).get("val")
        if output is None or weight is None:
            continue
        found = True
        total += int(output.numel()) * int(np.prod(weight.shape[1:]))
    return total if found else None


def inspect_keras(artifact: ModelArtifact, runner: Runner) -> GraphFacts:
    """Count parameters and MACs of Conv2D/DepthwiseConv2D/Dense layers from their shapes."""
    from edgekit.inspectors import GraphFacts

    if runner.is_saved_model:
        variables = runner.model.variables if hasattr(runner.model, "variables") else []
        facts = GraphFacts(params=int(sum(np.prod(v.shape) for v in variables)))
        facts.weight_dtypes["float32"] = facts.params
        return facts
    model = runner.model
    layers = list(leaf_layers(model))
    facts = GraphFacts(params=int(model.count_params()), ops=Counter(type(layer).__name__ for layer in layers))
    for weight in model.weights:
        facts.weight_dtypes[str(weight.dtype)] += int(np.prod(weight.shape))
    facts.macs = keras_macs(model)
    return facts


def keras_macs(model: keras.Model) -> int:
    """Multiply-accumulates of a Keras model's Conv2D, DepthwiseConv2D and Dense layers."""
    return sum(_layer_macs(layer) for layer in leaf_layers(model))


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers of a Keras model, descending into nested models (e.g. a MobileNetV2 backbone)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from leaf_layers(layer)
        elif type(layer).__name__ != "InputLayer":
            yield layer


def _layer_macs(layer: keras.layers.Layer) -> int:
    kind = type(layer).__name__
    try:
        out = [d or 1 for d in layer.output.shape]
    except (AttributeError, ValueError):
        return 0
    if kind == "Conv2D":
        kernel = layer.kernel.shape
        return int(np.prod(out)) * int(kernel[0] * kernel[1] * kernel[2]) // max(getattr(layer, "groups", 1), 1)
    if kind == "DepthwiseConv2D":
        kernel = layer.kernel.shape
        return int(np.prod(out)) * int(kernel[0] * kernel[1])
    if kind == "Dense":
        return int(np.prod(out)) * int(layer.kernel.shape[0])
    return 0
