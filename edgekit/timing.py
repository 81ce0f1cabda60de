"""Side-by-side latency: models timed in alternating turns, so drift in machine load hits all alike."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def alternating_p50(
    artifacts: list[Any], feed_for: Any, rounds: int = 3, runs: int = 30, warmup: int = 5, threads: int | None = None
) -> list[float]:
    """Median latency (ms) of each model, timed in turns with only one session open at a time.

    onnxruntime's spinning worker threads slow a second live session (measured 4.8 -> 7.6 ms on 2
    cores), so each model gets the machine to itself, and alternating rounds share any load drift.
    """
    from edgekit.runtimes import open_runner

    samples: list[list[float]] = [[] for _ in artifacts]
    for _ in range(rounds):
        for index, artifact in enumerate(artifacts):
            with open_runner(artifact, threads=threads) as runner:
                feed = [feed_for(runner)]
                for _ in range(warmup):
                    runner.infer(feed)
                for _ in range(runs):
                    started = time.perf_counter()
                    runner.infer(feed)
                    samples[index].append(time.perf_counter() - started)
    return [float(np.median(s) * 1e3) for s in samples]
