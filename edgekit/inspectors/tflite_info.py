"""TFLite graph facts from the interpreter alone (works on a device without TensorFlow)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact
    from edgekit.inspectors import GraphFacts
    from edgekit.runtimes import Runner


def inspect_graph(artifact: ModelArtifact, runner: Runner) -> GraphFacts:
    """Read parameters, MACs, ops and weight dtypes of a TFLite file."""
    from edgekit.inspectors import GraphFacts
    from edgekit.runtimes.tflite import read_graph

    graph = read_graph(artifact.path)
    ops, tensors = graph.ops, graph.tensors
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {int(d["index"]) for d in graph.interpreter.get_input_details()}
    consumed = {int(i) for op in ops for i in op["inputs"] if int(i) >= 0}
    facts = GraphFacts(ops=Counter(op["op_name"] for op in ops))
    for index in consumed - produced - graph_inputs:
        tensor = tensors.get(index)
        if tensor is None or len(tensor["shape"]) == 0:
            continue
        size = int(np.prod(tensor["shape"]))
        dtype = np.dtype(tensor["dtype"]).name
        if size > 1 and dtype != "int64" and not (dtype == "int32" and len(tensor["shape"]) == 1 and size <= 8):
            facts.params += size
            facts.weight_dtypes[dtype] += size
    facts.macs = sum(_op_macs(op, tensors) for op in ops) if ops else None
    return facts


def _op_macs(op: dict[str, object], tensors: dict[int, dict[str, object]]) -> int:
    name = op["op_name"]
    inputs = [int(i) for i in op["inputs"]]
    if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(inputs) < 2:
        return 0
    out = tensors[int(op["outputs"][0])]["shape"]
    weight = tensors[inputs[1]]["shape"]
    if name == "CONV_2D":
        return int(np.prod(out)) * int(np.prod(weight[1:]))
    if name == "DEPTHWISE_CONV_2D":
        return int(np.prod(out)) * int(weight[1] * weight[2])
    return int(np.prod(out)) * int(weight[-1])
