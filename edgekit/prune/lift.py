"""Editable layers from a .pt2 without the model's code: the exported program's module, with each
aten convolution, batch norm and linear call turned back into an nn.Conv2d / nn.BatchNorm2d / nn.Linear
holding the program's own weights, at the path the weights had (`_blocks.3._depthwise_conv`). torch-
pruning's dependency graph then sees layers, and the pruned module exports to a .pt2 again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import UnsupportedRoute
from edgekit.loaders.torch_loader import exported_program, import_torch

if TYPE_CHECKING:
    import torch


def lift_exported_program(path: Path) -> torch.fx.GraphModule:
    """The .pt2's module with its convolutions, batch norms and linears as nn layers (see module doc)."""
    torch = import_torch()
    module = exported_program(path).module()
    aten = torch.ops.aten
    lifters = {aten.conv2d.default: _conv, aten.batch_norm.default: _batch_norm, aten.linear.default: _linear}
    graph = module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in lifters:
            owner, layer = lifters[node.target](module, node)
            module.add_submodule(owner, layer)
            with graph.inserting_before(node):
                call = graph.call_module(owner, (node.args[0],))
            node.replace_all_uses_with(call)
            graph.erase_node(node)
        elif node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            graph.erase_node(node)  # export's check that the batch is the example's 1: training uses more
        elif node.op == "call_function" and node.target == aten.view.default and _flattens(node):
            node.target, node.args = aten.flatten.using_ints, (node.args[0], 1)  # not the exported batch of 1
    graph.eliminate_dead_code()
    # A plain GraphModule over the same graph: the exported program's own refuses train()/eval(),
    # which recovery needs; it copies only what the graph still uses (no orphaned weights).
    return torch.fx.GraphModule(module, graph)


def _weight(module: torch.fx.GraphModule, node: torch.fx.Node | None) -> torch.Tensor | None:
    if node is None:
        return None
    if node.op != "get_attr":
        raise UnsupportedRoute(
            f"the .pt2's {node.name} computes its weights, so its layers cannot be rebuilt",
            fix="pass --arch package.module:callable that builds the network",
        )
    try:
        return module.get_parameter(node.target)
    except AttributeError:  # running statistics are buffers
        return module.get_buffer(node.target)


def _owner(node: torch.fx.Node) -> str:
    """Where the layer goes: the module path its weight had (`_conv_stem` for `_conv_stem.weight`)."""
    return str(node.target).rpartition(".")[0] or str(node.target).replace(".", "_")


def _conv(module: torch.fx.GraphModule, node: torch.fx.Node) -> tuple[str, torch.nn.Module]:
    torch = import_torch()
    args = [*node.args, *[None] * 7][:7]
    weight, bias = _weight(module, args[1]), _weight(module, args[2])
    stride, padding, dilation = args[3] or [1, 1], args[4] or [0, 0], args[5] or [1, 1]
    groups = args[6] or 1
    layer = torch.nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), tuple(stride),
                            tuple(padding), tuple(dilation), groups, bias=bias is not None)  # fmt: skip
    layer.weight = torch.nn.Parameter(weight.detach().clone())
    if bias is not None:
        layer.bias = torch.nn.Parameter(bias.detach().clone())
    return _owner(args[1]), layer


def _batch_norm(module: torch.fx.GraphModule, node: torch.fx.Node) -> tuple[str, torch.nn.Module]:
    torch = import_torch()
    _x, weight, bias, mean, var, _training, momentum, eps = node.args[:8]
    running_mean = _weight(module, mean)
    layer = torch.nn.BatchNorm2d(running_mean.shape[0], eps=float(eps), momentum=float(momentum))
    with torch.no_grad():
        layer.running_mean.copy_(running_mean)
        layer.running_var.copy_(_weight(module, var))
        for target, source in ((layer.weight, weight), (layer.bias, bias)):
            if source is not None:  # affine=False leaves the identity scale and shift
                target.copy_(_weight(module, source))
    return _owner(mean), layer


def _linear(module: torch.fx.GraphModule, node: torch.fx.Node) -> tuple[str, torch.nn.Module]:
    torch = import_torch()
    weight = _weight(module, node.args[1])
    bias = _weight(module, node.args[2] if len(node.args) > 2 else None)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = torch.nn.Parameter(weight.detach().clone())
    if bias is not None:
        layer.bias = torch.nn.Parameter(bias.detach().clone())
    return _owner(node.args[1]), layer


def _flattens(node: torch.fx.Node) -> bool:
    """A view to [1, -1]: export's record of `x.view(x.size(0), -1)` at batch 1."""
    shape = node.args[1] if len(node.args) > 1 else None
    return isinstance(shape, (list, tuple)) and len(shape) == 2 and shape[0] == 1 and shape[1] == -1
