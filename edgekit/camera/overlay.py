"""Pure drawing functions for the live view and recordings."""

from __future__ import annotations

from typing import Any

import numpy as np


def draw_overlay(frame: np.ndarray, top: list[Any], fps: float, latency_ms: float) -> np.ndarray:
    """A copy of `frame` with the top-k labels, probabilities, FPS and latency written on it."""
    import cv2

    out = frame.copy()
    lines = [f"{p.label or p.index}: {p.probability:.0%}" for p in top]
    lines.append(f"{fps:.1f} FPS  {latency_ms:.1f} ms")
    height = 22 * len(lines) + 8
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 360), height), (0, 0, 0), thickness=-1)
    for row, text in enumerate(lines):
        cv2.putText(out, text, (8, 22 * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out
