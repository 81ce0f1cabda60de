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


def tf_scope(node: NodeProto) -> str:
    """A TensorFlow name-scope made from the node's source name, so TFLite tensors carry it."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", source_name(node).split(" (")[0].strip("/"))[:120]
    return name if re.match(r"[A-Za-z0-9.]", name) else f"n{name}"
