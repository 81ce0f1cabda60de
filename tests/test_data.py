"""Data sources: folders (with junk), video files, .npy, labels from folders and CSV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekit.artifact import TensorSpec
from edgekit.data import DataSource
from edgekit.errors import BadInput
from edgekit.preprocess import PRESETS


@pytest.fixture()
def mixed_folder(tmp_path: Path, photos_dir: Path) -> Path:
    folder = tmp_path / "mixed"
    (folder / "nested").mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        (folder / "nested" / f"{name}.png").write_bytes((photos_dir / f"{name}.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


def test_folder_is_recursive_and_skips_unreadable_files(mixed_folder: Path) -> None:
    source = DataSource(mixed_folder)
    samples = list(source)
    assert len(samples) == 3 and all(s.image is not None and s.image.shape[2] == 3 for s in samples)
    assert source.stats.used == 3 and source.stats.skipped == 2


def test_seeded_sampling_is_deterministic(photos_dir: Path) -> None:
    first = [s.name for s in DataSource(photos_dir, count=3, seed=7)]
    assert first == [s.name for s in DataSource(photos_dir, count=3, seed=7)]
    assert len(first) == 3


def test_video_frames(tmp_path: Path, photos_dir: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for name in ("chelsea", "coffee", "rocket", "astronaut") * 5:
        writer.write(cv2.resize(cv2.imread(str(photos_dir / f"{name}.png")), (320, 240)))
    writer.release()
    samples = list(DataSource(video, count=5))
    assert len(samples) == 5 and samples[0].image.shape == (240, 320, 3)


def test_npy_of_preprocessed_tensors(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((6, 3, 8, 8)).astype(np.float32))
    samples = list(DataSource(path, count=4))
    tensor = samples[0].to_tensor(PRESETS["unit"], TensorSpec("x", [1, 3, 8, 8], layout="NCHW"))
    assert len(samples) == 4 and tensor.shape == (1, 3, 8, 8)
    with pytest.raises(BadInput, match="the model wants"):
        samples[0].to_tensor(PRESETS["unit"], TensorSpec("x", [1, 8, 8, 3], layout="NHWC"))


def test_empty_and_junk_only_sources_fail(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(BadInput, match=r"no usable samples \(1 unreadable"):
        list(DataSource(tmp_path / "junk"))
    with pytest.raises(BadInput, match="does not exist"):
        DataSource(tmp_path / "missing")


def test_labels_from_class_folders_and_csv(tmp_path: Path, photos_dir: Path) -> None:
    for cls, name in (("cat", "chelsea"), ("cup", "coffee")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        (tmp_path / "data" / cls / f"{name}.png").write_bytes((photos_dir / f"{name}.png").read_bytes())
    labels = {s.name.split("/")[-1]: s.label for s in DataSource(tmp_path / "data", labels=["cup", "dog", "cat"])}
    assert labels == {"chelsea.png": 2, "coffee.png": 0}
    with pytest.raises(BadInput, match="not one of the model's 2 classes"):
        list(DataSource(tmp_path / "data", labels=["dog", "cup"]))
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("filename,label\nchelsea.png,dog\ncoffee.png,cup\n")
    labels = {
        s.name.split("/")[-1]: s.label for s in DataSource(tmp_path / "data", labels=["cup", "dog"], label_csv=csv_file)
    }
    assert labels == {"chelsea.png": 1, "coffee.png": 0}


def test_photos_sorted_by_date_are_not_read_as_classes(tmp_path: Path, photos_dir: Path) -> None:
    """tree/2024/july/img.png is a folder of photos, not labelled data: with the model's labels none of
    whose names is a top folder, the samples are unlabelled; without labels (calibration) it reads too."""
    for year, month, name in (("2024", "july", "chelsea"), ("2025", "may", "coffee")):
        (tmp_path / "tree" / year / month).mkdir(parents=True)
        (tmp_path / "tree" / year / month / f"{name}.png").write_bytes((photos_dir / f"{name}.png").read_bytes())
    assert [s.label for s in DataSource(tmp_path / "tree", labels=["cat", "dog"])] == [None, None]
    assert len(list(DataSource(tmp_path / "tree"))) == 2  # used to fail: "label 'july' ... not one of"
