"""Videos made from the real photos, and what the runner alone says about each of their frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgekit.artifact import read_artifact
from edgekit.preprocess import image_to_tensor
from edgekit.runtimes import open_runner


def write_photo_video(path: Path, photos: list[Path], fps: float) -> Path:
    """A 640x480 MJPG video with one frame per entry of `photos`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for photo in photos:
        writer.write(cv2.resize(cv2.imread(str(photo)), (640, 480)))
    writer.release()
    return path


def decoded_frames(video: Path) -> list[np.ndarray]:
    """Every frame of `video` as OpenCV decodes it (BGR)."""
    capture, frames = cv2.VideoCapture(str(video)), []
    while (decoded := capture.read())[0]:
        frames.append(decoded[1])
    capture.release()
    return frames


def direct_top1(model: Path, video: Path) -> list[int]:
    """Top-1 of each decoded frame of `video`, by the model's runner alone."""
    artifact = read_artifact(model)
    with open_runner(artifact) as runner:
        spec = runner.inputs()[0]
        return [
            int(np.argmax(runner.infer([image_to_tensor(frame, artifact.preprocessing, spec, order="BGR")])[0]))
            for frame in decoded_frames(video)
        ]
