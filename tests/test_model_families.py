"""Families users bring beyond the CNNs of the real models, as small faithful plain-torch versions
(torchvision does not install here): each converts to TFLite through the NHWC translator with parity
against torch on real-photo crops. The start of #16's model zoo."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.formats import Format
from edgekit.preprocess import PreprocessOverrides

pytestmark = pytest.mark.slow


def _mixer():  # a token MLP block: patchify, LayerNorm, Linear-GELU-Linear on [batch, tokens, channels]
    import torch.nn as nn

    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch, self.norm = nn.Conv2d(3, 32, 8, 8), nn.LayerNorm(32)
            self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
            self.head = nn.Linear(32, 10)

        def forward(self, x):  # type: ignore[no-untyped-def]
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            tokens = tokens + self.mlp(self.norm(tokens))
            return self.head(tokens.mean(1))

    return Mixer()


def _convnext_block():  # ConvNeXt: depthwise 7x7, channels-last LayerNorm, pointwise MLP with GELU
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.dw = nn.Conv2d(3, 16, 4, 4), nn.Conv2d(16, 16, 7, padding=3, groups=16)
            self.norm = nn.LayerNorm(16)
            self.mlp = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))
            self.head = nn.Linear(16, 10)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.stem(x)
            y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
            return self.head((x + y).mean((2, 3)))

    return Block()


@pytest.mark.parametrize("family", ["mixer", "convnext_block"])
def test_family_converts_to_tflite_with_parity(family: str, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = {"mixer": _mixer, "convnext_block": _convnext_block}[family]().eval()
    source = tmp_path / f"{family}.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(source))
    options = ConvertOptions(Format.TFLITE, tmp_path / f"{family}.tflite", preprocess=PreprocessOverrides(
        preset="unit", size=(64, 64)))  # fmt: skip
    report = convert_model(source, options)
    output = report.parity.outputs[0]
    assert report.parity.passed and output.max_abs_diff <= 1e-4 and output.top1_agreement == 1.0
