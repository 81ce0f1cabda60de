"""Recovering the source framework's layer names from ONNX nodes."""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import NodeProto


def source_name(node: NodeProto) -> str:
    """The source framework's layer name: torch.export's module path (e.g. '_blocks.1._bn2'), else the
    exporter's node name (TorchScript: '/_blocks.1/_project_conv/Conv', tf2onnx: 'model/block_1/Conv2D')."""
    props = {prop.key: prop.value for prop in node.metadata_props}
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
