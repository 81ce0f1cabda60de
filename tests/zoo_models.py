"""The model zoo: small faithful versions of the families users bring, shared by tests/test_model_families.py
and `make bench-zoo` (benchmarks/zoo.py). torchvision and timm do not install here, so the torch families
are written in plain torch at 64x64; the Keras ones are stock `keras.applications` with weights=None.
BatchNorm statistics are set from real-photo crops, so activations have the ranges real inputs give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZE = 64  # torch families' input side
KERAS_SIZE = 96  # Keras applications' input side (the smallest most of them accept is 32-75)


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


def _resnet_basic():  # ResNet: a max-pooled stem, two basic blocks (one strided, 1x1 projection)
    import torch.nn as nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.na, self.nb, self.relu = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout), nn.ReLU()
            self.skip = (
                nn.Sequential()
                if stride == 1 and cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            )

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.relu(self.nb(self.b(self.relu(self.na(self.a(x))))) + self.skip(x))

    return nn.Sequential(
        nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        Basic(16, 16, 1), Basic(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


def _mobilenetv2_block():  # MobileNetV2: inverted residuals (expand, depthwise, project), ReLU6
    import torch.nn as nn

    class Inverted(nn.Module):
        def __init__(self, c: int, expand: int) -> None:
            super().__init__()
            h = c * expand
            self.body = nn.Sequential(
                nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c),
            )  # fmt: skip

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x + self.body(x)

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(), Inverted(16, 6), Inverted(16, 6),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def _mobilenetv3_block():  # MobileNetV3: hard-swish, squeeze-excite with hard-sigmoid
    import torch.nn as nn

    class SE(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 4, 1), nn.ReLU(),
                                    nn.Conv2d(c // 4, c, 1), nn.Hardsigmoid())  # fmt: skip

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * self.fc(x)

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        nn.Conv2d(16, 16, 5, 2, 2, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish(), SE(16),
        nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )  # fmt: skip


def _densenet_block():  # DenseNet: BN-ReLU-conv layers whose outputs concatenate, an average-pool transition
    import torch
    import torch.nn as nn

    class Dense(nn.Module):
        def __init__(self, c: int, growth: int = 8, layers: int = 3) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(), nn.Conv2d(c + i * growth, growth, 3, 1, 1))
                for i in range(layers)
            )

        def forward(self, x):  # type: ignore[no-untyped-def]
            for layer in self.layers:
                x = torch.cat([x, layer(x)], 1)
            return x

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), Dense(16), nn.BatchNorm2d(40), nn.ReLU(), nn.Conv2d(40, 20, 1), nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 10),
    )  # fmt: skip


def _efficientnet_mbconv():  # EfficientNet: MBConv with SiLU and a sigmoid squeeze-excite
    import torch.nn as nn

    class MBConv(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            h = c * 4
            self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.SiLU())
            self.dw = nn.Sequential(nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.SiLU())
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(h, c // 2, 1), nn.SiLU(),
                                    nn.Conv2d(c // 2, h, 1), nn.Sigmoid())  # fmt: skip
            self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.dw(self.expand(x))
            return x + self.project(y * self.se(y))

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(), MBConv(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def _regnet_block():  # RegNetX: grouped 3x3 convolutions (group width 8) in a bottleneck
    import torch.nn as nn

    class X(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 3, 1, 1, groups=c // 8, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
            )  # fmt: skip
            self.relu = nn.ReLU()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.relu(x + self.body(x))

    return nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), X(32), X(32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))  # fmt: skip


TORCH_FAMILIES: dict[str, Callable[[], object]] = {
    "resnet": _resnet_basic, "mobilenetv2": _mobilenetv2_block, "mobilenetv3": _mobilenetv3_block,
    "efficientnet": _efficientnet_mbconv, "densenet": _densenet_block, "regnet": _regnet_block,
    "shufflenetv2": _shufflenet_unit, "squeezenet": _squeezenet_fire, "convnext": _convnext_block,
    "mixer": _mixer, "vit": _vit, "unet": _unet,
}  # fmt: skip
# keras.applications constructor and its keyword arguments (weights=None: no downloads here)
KERAS_APPLICATIONS: dict[str, tuple[str, dict[str, object]]] = {
    "MobileNetV2": ("MobileNetV2", {"alpha": 0.35}),
    "MobileNetV3Small": ("MobileNetV3Small", {}),
    "EfficientNetB0": ("EfficientNetB0", {}),
    "EfficientNetV2B0": ("EfficientNetV2B0", {}),
    "DenseNet121": ("DenseNet121", {}),
    "NASNetMobile": ("NASNetMobile", {}),
    "ResNet50V2": ("ResNet50V2", {}),
    "ConvNeXtTiny": ("ConvNeXtTiny", {}),
}
# 4-8 minutes each through both conversions and quantize on 2 cores: `make test` leaves them to
# `make test-zoo` and `make bench-zoo` (pytest -m heavy runs them too).
KERAS_HEAVY = ("DenseNet121", "NASNetMobile", "ResNet50V2", "ConvNeXtTiny")
# Their conversion and int8 take 5-7 minutes each on a 2-core AVX2 host (2 on the Xeon): `make test`
# keeps their pruning (which converts to TFLite with parity) and the small net of their special layers.
KERAS_HEAVY_INT8 = (*KERAS_HEAVY, "EfficientNetB0", "EfficientNetV2B0")


def _crops(count: int, size: int) -> np.ndarray:
    """Real-photo crops in [0, 1], NHWC."""
    import cv2

    from edgekit.samples import random_crops, sample_photos

    crops = random_crops(list(sample_photos().values()), count, seed=7)
    return np.stack([cv2.resize(c, (size, size)) for c in crops]).astype(np.float32) / 255.0


def save_torch_family(name: str, folder: Path) -> Path:
    """The family as a .pt2 at SIZE, BatchNorm statistics from 16 real crops."""
    import torch

    torch.manual_seed(0)
    model = TORCH_FAMILIES[name]()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: one batch sets the statistics to its own
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(_crops(16, SIZE).transpose(0, 3, 1, 2).copy()))
    model.eval()
    path = folder / f"{name}.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, SIZE, SIZE),)), str(path))
    return path


def save_keras_application(name: str, folder: Path) -> Path:
    """The application as .keras at KERAS_SIZE, 10 classes, BatchNorm statistics from 16 real crops."""
    import keras

    constructor, kwargs = KERAS_APPLICATIONS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, constructor)(
        weights=None, input_shape=(KERAS_SIZE, KERAS_SIZE, 3), classes=10, **kwargs
    )
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the next training-mode call sets the moving statistics to its batch's
    model(_crops(16, KERAS_SIZE) * 255.0, training=True)  # the applications rescale 0-255 inputs themselves
    path = folder / f"{name}.keras"
    model.save(path)
    return path
