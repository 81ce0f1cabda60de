"""Calibration and evaluation data: image folders, video files, or a .npy of preprocessed tensors.

Streamed one sample at a time (never all in memory), seeded sampling, unreadable files skipped and
counted. Shared by quantization, validation, benchmarks and the camera loop.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekit.artifact import Preprocessing, TensorSpec
from edgekit.errors import BadInput
from edgekit.preprocess import IMAGE_SUFFIXES, image_to_tensor

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


@dataclasses.dataclass
class Sample:
    """One input: an RGB photo (to be preprocessed) or an already preprocessed tensor."""

    name: str
    image: np.ndarray | None = None
    tensor: np.ndarray | None = None
    label: int | None = None

    def to_tensor(self, prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
        """The model input for this sample, batch of one."""
        if self.tensor is not None:
            expected = [d for d in spec.shape[1:]]
            if list(self.tensor.shape) != expected and None not in expected:
                raise BadInput(
                    f"sample {self.name} has shape {list(self.tensor.shape)}, the model wants {expected}",
                    fix="save the .npy with the model's input shape (without the batch dimension)",
                )
            return np.ascontiguousarray(self.tensor[None], dtype=np.float32)
        return image_to_tensor(self.image, prep, spec)


@dataclasses.dataclass
class DataStats:
    """How many samples were used and skipped."""

    used: int = 0
    skipped: int = 0
    skipped_examples: list[str] = dataclasses.field(default_factory=list)

    def skip(self, name: str) -> None:
        """Count one unreadable file."""
        self.skipped += 1
        if len(self.skipped_examples) < 3:
            self.skipped_examples.append(name)


class DataSource:
    """An iterable over samples from a folder, a video file or a .npy file."""

    def __init__(
        self,
        path: Path,
        count: int | None = None,
        seed: int = 0,
        labels: list[str] | None = None,
        label_csv: Path | None = None,
    ) -> None:
        if not path.exists():
            raise BadInput(f"data source {path} does not exist", fix="give an image folder, a video file or a .npy")
        self.path, self.count, self.seed = path, count, seed
        self.class_names = labels
        self._csv = _read_label_csv(label_csv) if label_csv else None
        self._class_folders: bool | None = None
        self.stats = DataStats()

    def __iter__(self) -> Iterator[Sample]:
        self.stats = DataStats()
        if self.path.is_dir():
            samples = self._folder()
        elif self.path.suffix.lower() == ".npy":
            samples = self._npy()
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            samples = self._video()
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            samples = self._files([self.path])
        else:
            raise BadInput(f"{self.path} is not an image folder, video file or .npy", fix="check the data path")
        for sample in samples:
            self.stats.used += 1
            yield sample
        if self.stats.used == 0:
            skipped = (
                f" ({self.stats.skipped} unreadable files skipped, e.g. {self.stats.skipped_examples[0]})"
                if self.stats.skipped
                else ""
            )
            raise BadInput(
                f"data source {self.path} yielded no usable samples{skipped}",
                fix="give a folder with readable JPEG/PNG photos, a video or a .npy",
            )

    def _folder(self) -> Iterator[Sample]:
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and not p.name.startswith("."))
        order = np.random.default_rng(self.seed).permutation(len(files)) if self.count else range(len(files))
        return self._files([files[i] for i in order])

    def _files(self, files: list[Path]) -> Iterator[Sample]:
        import cv2

        for path in files:
            if self.count is not None and self.stats.used >= self.count:
                return
            data = np.fromfile(str(path), dtype=np.uint8) if path.suffix.lower() in IMAGE_SUFFIXES else None
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
            if image is None:
                self.stats.skip(str(path))
                continue
            yield Sample(str(path), image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label=self._label_of(path))

    def _label_of(self, path: Path) -> int | None:
        """The class of `path`: its CSV label, else the first folder under the root (root/class/**/img).
        Folders count as classes only when they look like it: with the model's labels given, a tree
        none of whose top folders is a label (photos by date: 2024/july/) is unlabelled."""
        key = self._csv.get(path.name) if self._csv is not None else None
        relative = path.relative_to(self.path).parts if path.is_relative_to(self.path) else ()
        name = key if key is not None else (relative[0] if len(relative) > 1 else None)
        if name is None or (key is None and not self._folders_are_classes()):
            return None
        names = self.class_names or sorted(p.name for p in self.path.iterdir() if p.is_dir())
        if name.isdigit() and not self.class_names:
            return int(name)
        if name not in names:
            raise BadInput(
                f"label {name!r} of {path} is not one of the model's {len(names)} classes",
                fix="name class folders (or CSV labels) after the model's labels",
            )
        return names.index(name)

    def _folders_are_classes(self) -> bool:
        """Without the model's labels every top folder is a class; with them, only if one is a label."""
        if not self.class_names:
            return True
        if self._class_folders is None:
            folders = [p.name for p in self.path.iterdir() if p.is_dir()]
            self._class_folders = any(name in self.class_names for name in folders)
        return self._class_folders

    def _npy(self) -> Iterator[Sample]:
        try:
            array = np.load(str(self.path), mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise BadInput(f"{self.path} is not a readable .npy array ({exc})", fix="save it with numpy.save") from exc
        indices = np.random.default_rng(self.seed).permutation(len(array)) if self.count else range(len(array))
        for i in list(indices)[: self.count]:
            yield Sample(f"{self.path.name}[{i}]", tensor=np.asarray(array[i], dtype=np.float32))

    def _video(self) -> Iterator[Sample]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise BadInput(f"video {self.path} cannot be opened", fix="give an MJPG/H.264 video OpenCV can read")
        try:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
            wanted = set(np.linspace(0, max(total - 1, 0), min(self.count or total, total), dtype=int).tolist())
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                if index in wanted or not total:
                    yield Sample(f"{self.path.name}#{index}", image=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            capture.release()


def _read_label_csv(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise BadInput(f"labels CSV {path} does not exist", fix="give a CSV of filename,label rows")
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    if rows and rows[0][:2] == ["filename", "label"]:
        rows = rows[1:]
    if not rows or any(len(row) < 2 for row in rows):
        raise BadInput(f"labels CSV {path} must have filename,label rows", fix="e.g. dog1.jpg,Samoyed")
    return {Path(row[0]).name: row[1].strip() for row in rows}
