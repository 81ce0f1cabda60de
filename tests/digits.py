"""scikit-learn's handwritten digits (real, labelled) as class folders, and small CNNs trained on them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIZE = 16
WIDTH = 32  # filters of the first conv; wide enough that convolutions, not call overhead, dominate latency


def digits_folders(root: Path) -> dict[str, Path]:
    """train/ and test/ folders of 16x16 RGB PNGs, one sub-folder per digit; returns the folders."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    split = int(0.75 * len(order))
    for part, indices in (("train", order[:split]), ("test", order[split:])):
        for index in indices:
            folder = root / part / str(bunch.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(to_rgb(bunch.images[index]), cv2.COLOR_RGB2BGR))
    return {"train": root / "train", "test": root / "test"}


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit (0..16) as a 16x16 RGB uint8 photo."""
    grey = np.round(image * (255 / 16)).astype(np.uint8)
    grey = cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    return np.repeat(grey[:, :, None], 3, axis=2)


def load_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] NHWC and labels, read back from the PNGs exactly as edgekit will read them."""
    images, labels = [], []
    for path in sorted(folder.rglob("*.png")):
        images.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
        labels.append(int(path.parent.name))
    return np.stack(images), np.array(labels)


def build_torch_cnn():
    """The digits CNN (NCHW): two conv blocks and a linear head, untrained."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, WIDTH, 3, padding=1),
        nn.BatchNorm2d(WIDTH),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(WIDTH, 2 * WIDTH, 3, padding=1),
        nn.BatchNorm2d(2 * WIDTH),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * WIDTH * 4 * 4, 10),
    )


def train_torch(x: np.ndarray, y: np.ndarray, epochs: int = 15):
    """A small torch CNN (NCHW), trained with Adam; returns it in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = build_torch_cnn()
    inputs, targets = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), targets[batch]).backward()
            optimizer.step()
    return model.eval()


def train_keras(x: np.ndarray, y: np.ndarray, epochs: int = 30):
    """The same CNN in Keras (NHWC)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(WIDTH, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(2 * WIDTH, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model
