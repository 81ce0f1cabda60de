"""Tiny networks for fast unit tests (importable as --arch tests.tiny_nets:TinyNet)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small CNN with the layer kinds of mobile classifiers: conv, BN, ReLU6, depthwise, pool, linear."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(),
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(),
            nn.Conv2d(width, width * 2, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(width * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        x = self.features(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def make_tiny(seed: int = 0, **kwargs: int) -> TinyNet:
    """A TinyNet with seeded random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = TinyNet(**kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


class HeadOnly(nn.Module):
    """Nothing but a classifier head: no layer that pruning may touch (the head is kept whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.head(torch.flatten(x, 1))


def write_onnx_failing_at_run_time(path: Path) -> Path:
    """An ONNX file onnxruntime accepts but cannot execute (a Reshape that only breaks at run time)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    shape = numpy_helper.from_array(np.array([7, -1], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "broken",
        [image],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, path)
    return path
