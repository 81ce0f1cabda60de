"""Runs inside a board (emulated or real): one model over a .npy of inputs; output 0 of each to a .npy.

Needs only numpy and a runtime (the `[pi]` install). Prints one JSON line: the runtime and the
board's facts, or {"error", "fix"} with exit 3.
Usage: python -m edgekit.board_worker '{"model": ..., "inputs": ..., "outputs": ..., "threads": null}'
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from edgekit.artifact import read_artifact
from edgekit.errors import EdgekitError
from edgekit.runtimes import open_runner


def run(request: dict) -> dict:
    """Run the request; the facts to report."""
    artifact = read_artifact(Path(request["model"]))
    inputs = np.load(request["inputs"])
    with open_runner(artifact, threads=request.get("threads")) as runner:
        outputs = np.stack([runner.infer([x])[0] for x in inputs])
        runtime = runner.describe()
    np.save(request["outputs"], outputs)
    return {
        "runtime": runtime,
        "machine": platform.machine(),
        "emulated_cpu": os.environ.get("QEMU_CPU"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "images": len(inputs),
    }


def main() -> int:
    """Entry point: one JSON line on stdout."""
    try:
        print(json.dumps(run(json.loads(sys.argv[1]))))
    except EdgekitError as exc:
        print(json.dumps({"error": exc.message, "fix": exc.fix}))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
