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


def _shufflenet_unit():  # ShuffleNetV2: channel split, a branch, concat, channel shuffle (5-D view)
    import torch
    import torch.nn as nn

    class Unit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, 2, 1)
            self.branch = nn.Sequential(
                nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=8),
                nn.Conv2d(8, 8, 1), nn.ReLU(),
            )  # fmt: skip
            self.head = nn.Linear(16, 10)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.stem(x)
            kept, changed = x.chunk(2, dim=1)
            x = torch.cat([kept, self.branch(changed)], 1)
            n, c, h, w = x.shape
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.head(x.mean((2, 3)))

    return Unit()


def _squeezenet_fire():  # SqueezeNet 1.1: MaxPool with ceil_mode=True, a fire module's two expands
    import torch
    import torch.nn as nn

    class Fire(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.pool = nn.Conv2d(3, 16, 3, 2), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.squeeze, self.e1, self.e3 = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 3, padding=1)
            self.head = nn.Conv2d(32, 10, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.pool(torch.relu(self.stem(x)))
            s = torch.relu(self.squeeze(x))
            x = torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)
            return self.head(x).mean((2, 3))

    return Fire()


def _unet():  # UNet: encoder, 2x2 up-convolution, skip concat, bilinear and nearest upsampling
    import torch
    import torch.nn as nn

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc1, self.enc2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.pool, self.up = nn.MaxPool2d(2), nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.dec = nn.Conv2d(16, 8, 3, padding=1)
            self.bilinear = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.nearest = nn.Upsample(scale_factor=0.5, mode="nearest")
            self.out = nn.Conv2d(8, 4, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            skip = torch.relu(self.enc1(x))
            deep = torch.relu(self.enc2(self.pool(skip)))
            y = torch.relu(self.dec(torch.cat([self.up(deep), skip], 1)))
            return self.out(self.nearest(self.bilinear(y)))  # a 4-class segmentation map

    return UNet()


def _vit():  # ViT: patches, a class token, position embeddings, multi-head self-attention, GELU MLP
    import torch
    import torch.nn as nn

    class ViT(nn.Module):
        def __init__(self, dim: int = 32, heads: int = 4) -> None:
            super().__init__()
            self.heads, self.patch = heads, nn.Conv2d(3, dim, 16, 16)
            self.cls, self.pos = nn.Parameter(torch.randn(1, 1, dim)), nn.Parameter(torch.randn(1, 17, dim) * 0.1)
            self.norm1, self.norm2, self.qkv = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.Linear(dim, 3 * dim)
            self.proj, self.head = nn.Linear(dim, dim), nn.Linear(dim, 10)
            self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))

        def forward(self, x):  # type: ignore[no-untyped-def]
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
            b, n, c = tokens.shape
            qkv = self.qkv(self.norm1(tokens)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attention = (q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5).softmax(-1)
            tokens = tokens + self.proj((attention @ v).transpose(1, 2).reshape(b, n, c))
            tokens = tokens + self.mlp(self.norm2(tokens))
            return self.head(tokens[:, 0])

    return ViT()


@pytest.mark.parametrize("family", ["mixer", "convnext_block", "shufflenet_unit", "squeezenet_fire", "unet", "vit"])
def test_family_converts_to_tflite_with_parity(family: str, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    makers = {"mixer": _mixer, "convnext_block": _convnext_block, "shufflenet_unit": _shufflenet_unit,
              "squeezenet_fire": _squeezenet_fire, "unet": _unet, "vit": _vit}  # fmt: skip
    model = makers[family]().eval()
    source = tmp_path / f"{family}.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(source))
    options = ConvertOptions(Format.TFLITE, output=tmp_path / f"{family}.tflite", preprocess=PreprocessOverrides(
        preset="unit", size=(64, 64)))  # fmt: skip
    report = convert_model(source, options)
    output = report.parity.outputs[0]
    assert report.parity.passed and output.max_abs_diff <= 1e-4 and output.top1_agreement == 1.0


def _keras_stock_layers(path: Path) -> Path:
    """The Keras layers that broke Keras -> ONNX in stock applications, in one small net: EfficientNet's
    Normalization (its mean and variance are captured constants), ConvNeXt's grouped Conv2D (Keras runs
    it under XLA) and exact GELU (TensorFlow's Erfc)."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.050, 0.051])(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", groups=4)(x)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    return path


@pytest.mark.parametrize("target", [Format.ONNX, Format.TFLITE])
def test_keras_normalization_grouped_conv_and_gelu_convert_with_parity(target: Format, tmp_path: Path) -> None:
    """tf2onnx used to leave Normalization's constants as missing graph inputs, a StatefulPartitionedCall
    for the grouped convolution and an Erfc node; each is now an ONNX graph onnxruntime runs, with parity."""
    import onnx

    source = _keras_stock_layers(tmp_path / "stock.keras")
    options = ConvertOptions(target, output=tmp_path / f"stock.{target.value}", preprocess=PreprocessOverrides(
        preset="unit"))  # fmt: skip
    report = convert_model(source, options)
    output = report.parity.outputs[0]
    assert report.parity.passed and output.max_abs_diff <= 1e-4 and output.top1_agreement == 1.0
    if target is Format.ONNX:
        model = onnx.load(str(report.output))
        ops = {node.op_type for node in model.graph.node}
        assert len(model.graph.input) == 1 and "Erf" in ops and not any("Call" in op for op in ops)
        assert any(a.name == "group" and a.i == 4 for n in model.graph.node if n.op_type == "Conv" for a in n.attribute)
