"""Preprocessing presets, layouts and image loading."""

from __future__ import annotations

import dataclasses
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


def test_bgr_frames_give_the_rgb_tensor(rng: np.random.Generator) -> None:
    """Camera frames arrive BGR: order="BGR" must give what the RGB photo gives, for either model order."""
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    for prep in (PRESETS["imagenet"], dataclasses.replace(PRESETS["imagenet"], channel_order="BGR")):
        for spec in (TensorSpec("x", [1, 3, 16, 16], layout="NCHW"), TensorSpec("x", [1, 16, 16, 3], layout="NHWC")):
            np.testing.assert_array_equal(
                image_to_tensor(bgr, prep, spec, order="BGR"), image_to_tensor(rgb, prep, spec)
            )
    swapped = image_to_tensor(rgb, dataclasses.replace(PRESETS["unit"], channel_order="BGR"), spec)
    np.testing.assert_allclose(swapped[0, ..., 0], image_to_tensor(rgb, PRESETS["unit"], spec)[0, ..., 2])


def test_center_crop_keeps_the_middle() -> None:
    """A 40x120 image whose outer thirds are black: the centre crop sees only the white middle."""
    image = np.zeros((40, 120, 3), np.uint8)
    image[:, 40:80] = 255
    tensor = image_to_tensor(
        image,
        dataclasses.replace(PRESETS["unit"], resize="center-crop"),
        TensorSpec("x", [1, 3, 16, 16], layout="NCHW"),
    )
    np.testing.assert_allclose(tensor, 1.0)


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
