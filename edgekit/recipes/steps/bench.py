"""Recipe step `bench`: every deployable model (ONNX, TFLite) made so far, side by side on the
recipe's device: locally, or on a board over SSH with `remote`."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.recipes.steps import Step, StepContext, StepOutcome, deployable


@dataclasses.dataclass
class BenchConfig:
    """Options of the bench step."""

    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    remote: str | None = None  # user@host of the board; None: this machine
    remote_python: str = "python3"
    ssh_options: list = dataclasses.field(default_factory=list)  # e.g. ["Port=2222"]
    duration: float | None = None  # also run for at least this many seconds
    allow_fallback: bool = False  # run on the CPU when the device's delegate is missing (and say so)


class BenchStep(Step):
    """Latency and memory of each model in a fresh process, with the host it was measured on."""

    name = "bench"
    Config = BenchConfig
    acts_on_all = True

    @classmethod
    def check(cls, config: BenchConfig, recipe: Any) -> list[str]:
        """At least one run."""
        return [] if config.runs >= 1 else ["bench: runs must be at least 1"]

    def run(self, config: BenchConfig, context: StepContext) -> StepOutcome:
        """Benchmark the ONNX/TFLite models made by earlier steps."""
        from edgekit.bench import BenchSettings, Remote, bench_models, bench_remote
        from edgekit.errors import BadInput

        models = context.models if context.single else deployable(context.models)
        if not models:
            raise BadInput("bench: no ONNX or TFLite model to benchmark", fix="add a convert or quantize step first")
        settings = BenchSettings(
            context.device, config.threads, config.runs, config.warmup, config.duration, config.allow_fallback
        )
        if config.remote:
            remote = Remote(config.remote, config.remote_python, list(config.ssh_options))
            results = bench_remote(models, settings, remote, context.progress)
        else:
            results = bench_models(models, settings, context.progress)
        host = results[0].host if results else {}
        return StepOutcome(
            None,
            {
                "device": context.device,
                "measured_on": config.remote or "this machine",
                "host": {k: host.get(k) for k in ("machine", "cpu", "cores")},
                "models": {
                    model.name: {
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "fps": r.throughput_fps,
                        "peak_rss_mb": r.peak_rss_mb,
                        "runtime": r.runtime,
                        "threads": r.threads,
                    }
                    for model, r in zip(models, results)
                },
            },
            results,
        )
