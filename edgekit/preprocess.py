"""Image preprocessing shared by every command that reads photos: presets, loading, tensors."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from edgekit.artifact import Preprocessing, TensorSpec
from edgekit.errors import BadInput, MissingDependency

PRESETS: dict[str, Preprocessing] = {
    # torchvision/timm ImageNet models: resize the shorter side to size/0.875, centre-crop.
    "imagenet": Preprocessing(
        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], resize="center-crop", preset="imagenet"
    ),
    # Keras MobileNet family: x / 127.5 - 1, whole image resized.
    "mobilenet": Preprocessing(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], resize="stretch", preset="mobilenet"),
    # Plain [0, 1] scaling.
    "unit": Preprocessing(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], resize="stretch", preset="unit"),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclasses.dataclass
class PreprocessOverrides:
    """What the user asked for on the command line; None means 'keep what the artifact says'."""

    preset: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    resize: str | None = None


def resolve_preprocessing(stored: Preprocessing | None, overrides: PreprocessOverrides) -> Preprocessing | None:
    """Combine the artifact's stored preprocessing with command-line overrides (flags win)."""
    if overrides.preset is not None:
        if overrides.preset not in PRESETS:
            raise BadInput(f"unknown preset {overrides.preset!r}", fix=f"use one of {', '.join(PRESETS)}")
        base = dataclasses.replace(PRESETS[overrides.preset])
    elif stored is not None:
        base = dataclasses.replace(stored)
    elif overrides.mean is not None or overrides.std is not None:
        base = dataclasses.replace(PRESETS["unit"], preset=None)
    else:
        return None
    if overrides.mean is not None:
        base.mean, base.preset = _three(overrides.mean, "--mean"), None
    if overrides.std is not None:
        base.std, base.preset = _three(overrides.std, "--std"), None
    if any(s == 0 for s in base.std):
        raise BadInput("--std contains 0", fix="give positive standard deviations")
    if overrides.size is not None:
        base.size = list(overrides.size)
    if overrides.resize is not None:
        base.resize = overrides.resize
    return base


def _three(values: tuple[float, ...], flag: str) -> list[float]:
    if len(values) == 1:
        return [float(values[0])] * 3
    if len(values) != 3:
        raise BadInput(f"{flag} takes 1 or 3 numbers, got {len(values)}", fix=f"e.g. {flag} 0.485,0.456,0.406")
    return [float(v) for v in values]


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependency("reading images", "OpenCV", "pi") from exc
    return cv2


def load_image(path: Path) -> np.ndarray:
    """Read a photo as an RGB uint8 array; BadInput for a missing, non-image or corrupt file."""
    if not path.is_file():
        raise BadInput(f"image {path} does not exist or is not a file", fix="check the path")
    cv2 = _cv2()
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise BadInput(f"{path} is not a readable image", fix="give a JPEG, PNG, BMP or WebP photo")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, by suffix), sorted; BadInput if there are none."""
    if not folder.is_dir():
        raise BadInput(f"image folder {folder} does not exist", fix="check the path")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"image folder {folder} holds no images", fix="add .jpg/.png/.bmp/.webp files")
    return files


def spatial_size(spec: TensorSpec, prep: Preprocessing) -> tuple[int, int]:
    """The (height, width) an image must be resized to for this input."""
    layout = spec.layout or "NCHW"
    dims = spec.shape[2:4] if layout == "NCHW" else spec.shape[1:3]
    if len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims):
        return int(dims[0]), int(dims[1])
    if prep.size:
        return int(prep.size[0]), int(prep.size[1])
    raise BadInput(f"input {spec.name!r} has no fixed size", fix="pass --input-size H,W")


def resize_image(image: np.ndarray, prep: Preprocessing, height: int, width: int) -> np.ndarray:
    """Resize an RGB image for the model: centre-crop (keeping aspect) or stretch."""
    cv2 = _cv2()
    if prep.resize == "center-crop":
        # Scale the shorter side to size / crop_fraction and keep the centre; the centre is cut from the
        # source first, so only the pixels kept are resampled (half the work on a 4:3 camera frame).
        factor = max(height / prep.crop_fraction / image.shape[0], width / prep.crop_fraction / image.shape[1])
        region_h = min(image.shape[0], max(1, round(height / factor)))
        region_w = min(image.shape[1], max(1, round(width / factor)))
        top, left = (image.shape[0] - region_h) // 2, (image.shape[1] - region_w) // 2
        region = image[top : top + region_h, left : left + region_w]
        return cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    if prep.resize == "stretch":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    raise BadInput(f"unknown resize mode {prep.resize!r}", fix="use center-crop or stretch")


def image_to_tensor(image: np.ndarray, prep: Preprocessing, spec: TensorSpec, order: str = "RGB") -> np.ndarray:
    """Turn one uint8 photo (channels in `order`: RGB, or BGR as OpenCV decodes) into a float32
    batch of one, in the input's layout and the model's channel order."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise BadInput(f"image has shape {image.shape}", fix="give a 3-channel colour image")
    channels = _channels(spec)
    if channels not in (None, 3):
        raise BadInput(f"input {spec.name!r} expects {channels} channels, photos have 3", fix="check the model input")
    height, width = spatial_size(spec, prep)
    # Resize first: reordering channels of the small image is cheap, of a camera frame is not.
    resized = resize_image(image, prep, height, width)
    if order != prep.channel_order:
        cv2 = _cv2()
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)  # 10x faster than a [..., ::-1] copy
    nchw = (spec.layout or "NCHW") == "NCHW"
    tensor = (resized.transpose(2, 0, 1) if nchw else resized).astype(np.float32, order="C")
    scale, offset = _normalizer(tuple(prep.mean), tuple(prep.std), tensor.shape, nchw)
    tensor *= scale
    tensor += offset
    return tensor[None]


@functools.lru_cache(maxsize=16)
def _normalizer(
    mean: tuple[float, ...], std: tuple[float, ...], shape: tuple[int, ...], nchw: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset with x * scale + offset == (x / 255 - mean) / std. For NHWC they are tiled to
    the full shape: numpy broadcasting over a last axis of 3 is ~15x slower than a plain product."""
    scale = 1.0 / (255.0 * np.asarray(std, np.float64))
    offset = -np.asarray(mean, np.float64) / np.asarray(std, np.float64)
    if nchw:
        return scale.astype(np.float32)[:, None, None], offset.astype(np.float32)[:, None, None]
    return np.broadcast_to(scale, shape).astype(np.float32), np.broadcast_to(offset, shape).astype(np.float32)


def _channels(spec: TensorSpec) -> int | None:
    if len(spec.shape) != 4:
        return None
    dim = spec.shape[1] if (spec.layout or "NCHW") == "NCHW" else spec.shape[3]
    return dim if isinstance(dim, int) else None


def guess_layout(shape: list[int | None]) -> str | None:
    """NCHW or NHWC for a 4-D image input, judged by where a channel count of 1 or 3 sits."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return "NCHW"
