"""Preprocessing presets, layouts and image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import TensorSpec
from edgekit.errors import BadInput
from edgekit.preprocess import (
    PRESETS,
    PreprocessOverrides,
    image_to_tensor,
    list_images,
    load_image,
    resolve_preprocessing,
)


def test_mobilenet_preset_is_x_over_127_5_minus_1(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    spec = TensorSpec("x", [1, 20, 20, 3], layout="NHWC")
    tensor = image_to_tensor(image, PRESETS["mobilenet"], spec)
    np.testing.assert_allclose(tensor[0], image.astype(np.float32) / 127.5 - 1, atol=1e-5)


def test_layouts_hold_the_same_values(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    nchw = image_to_tensor(image, PRESETS["imagenet"], TensorSpec("x", [1, 3, 32, 32], layout="NCHW"))
    nhwc = image_to_tensor(image, PRESETS["imagenet"], TensorSpec("x", [1, 32, 32, 3], layout="NHWC"))
    assert nchw.shape == (1, 3, 32, 32) and nhwc.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(nchw.transpose(0, 2, 3, 1), nhwc)


def test_imagenet_normalisation_of_a_grey_pixel() -> None:
    image = np.full((8, 8, 3), 128, np.uint8)
    tensor = image_to_tensor(image, PRESETS["imagenet"], TensorSpec("x", [1, 3, 8, 8], layout="NCHW"))
    expected = (128 / 255 - np.array(PRESETS["imagenet"].mean)) / np.array(PRESETS["imagenet"].std)
    np.testing.assert_allclose(tensor[0, :, 4, 4], expected, rtol=1e-5)


def test_overrides_win_over_stored_values() -> None:
    prep = resolve_preprocessing(PRESETS["imagenet"], PreprocessOverrides(mean=(0.5,), std=(0.25, 0.25, 0.25)))
    assert prep is not None and prep.mean == [0.5, 0.5, 0.5] and prep.std == [0.25] * 3 and prep.preset is None
    assert resolve_preprocessing(None, PreprocessOverrides()) is None


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(BadInput, match="expects 1 channels"):
        image_to_tensor(np.zeros((8, 8, 3), np.uint8), PRESETS["unit"], TensorSpec("x", [1, 1, 8, 8], layout="NCHW"))


def test_non_image_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "photo.jpg"
    bogus.write_bytes(b"this is text, not a JPEG")
    with pytest.raises(BadInput, match="not a readable image"):
        load_image(bogus)


def test_real_photo_loads_as_rgb(photos_dir: Path) -> None:
    image = load_image(photos_dir / "chelsea.png")
    assert image.shape == (300, 451, 3) and image.dtype == np.uint8
    assert image[..., 0].mean() > image[..., 2].mean()  # the ginger cat is red-heavy: RGB, not BGR


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="holds no images"):
        list_images(tmp_path)
