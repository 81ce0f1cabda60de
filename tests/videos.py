"""Videos made from the real photos, and what the runner alone says about each of their frames."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
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


MJPEG_SERVER = r"""
import glob, sys, time
import cv2
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

frames = [cv2.imencode(".jpg", cv2.resize(cv2.imread(p), (320, 240)))[1].tobytes()
          for p in sorted(glob.glob(sys.argv[2] + "/*.png"))]

class Stream(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        index = 0
        try:
            while True:
                data = frames[index % len(frames)]
                index += 1
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data))
                self.wfile.write(data + b"\r\n")
                time.sleep(1 / 30)
        except (BrokenPipeError, ConnectionResetError):
            pass

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Stream).serve_forever()
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_mjpeg(port: int, photos_dir: Path) -> subprocess.Popen:
    """A real MJPEG-over-HTTP stream of the photos (as IP cameras and mjpg-streamer serve), 30 FPS on
    http://127.0.0.1:PORT/; the caller kills the process."""
    server = subprocess.Popen([sys.executable, "-c", MJPEG_SERVER, str(port), str(photos_dir)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    server.kill()
    raise AssertionError("the MJPEG server did not start")
