"""Real photographs shipped inside PyPI packages (scikit-image, scikit-learn) and seeded crops of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import BadInput, MissingDependency

# Colour photographs in scikit-image's wheel (no download needed).
SKIMAGE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def sample_photos() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 photo, from scikit-image (and scikit-learn's two, when installed)."""
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingDependency("the bundled sample photos", "scikit-image", "photos") from exc
    photos = {name: np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3]) for name in SKIMAGE_PHOTOS}
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return photos
    bunch = load_sample_images()
    for filename, image in zip(bunch.filenames, bunch.images):
        photos[Path(filename).stem] = np.ascontiguousarray(image)
    return photos


def random_crops(photos: list[np.ndarray], count: int, seed: int) -> list[np.ndarray]:
    """`count` seeded random crops (40-100% of the shorter side) with random flips."""
    if not photos:
        raise BadInput("no photos to crop", fix="give a folder with images")
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        side = int(min(height, width) * rng.uniform(0.4, 1.0))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = photo[top : top + side, left : left + side]
        crops.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return crops


def write_sample_photos(folder: Path) -> list[Path]:
    """Write the sample photos as PNG files into `folder` (created if missing)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in sample_photos().items():
        target = folder / f"{name}.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise BadInput(f"could not write {target}", fix="check the folder is writable")
        written.append(target)
    return written


def write_crops(folder: Path, count: int, seed: int, size: int = 256) -> list[Path]:
    """Write `count` seeded random crops of the sample photos as JPEG files (calibration/eval sets)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, crop in enumerate(random_crops(list(sample_photos().values()), count, seed)):
        target = folder / f"crop_{seed}_{index:04d}.jpg"
        resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(target), cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        written.append(target)
    return written


def write_sample_video(target: Path, seconds_per_photo: float = 1.0, fps: int = 15, size: int = 480) -> Path:
    """An MJPG .avi that pans slowly across each bundled photo: a stand-in camera for `edgekit run`."""
    import cv2

    from edgekit.fsutil import atomic_path

    frames_per_photo = max(1, int(seconds_per_photo * fps))
    with atomic_path(target) as partial:
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
        if not writer.isOpened():
            raise BadInput(f"OpenCV cannot write an MJPG video at {target}", fix="choose an .avi path")
        try:
            for photo in sample_photos().values():
                side = min(photo.shape[:2])
                for step in range(frames_per_photo):
                    crop = _pan(photo, side, step / max(frames_per_photo - 1, 1))
                    frame = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return target


def _pan(photo: np.ndarray, side: int, position: float) -> np.ndarray:
    """A square crop of 85% of the shorter side, moved from one edge to the other as position goes 0 -> 1."""
    crop = int(side * 0.85)
    top = int((photo.shape[0] - crop) * position)
    left = int((photo.shape[1] - crop) * position)
    return photo[top : top + crop, left : left + crop]
