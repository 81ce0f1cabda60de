"""Recipe step `bench`: every deployable model (ONNX, TFLite) made so far, side by side on the
recipe's device: locally, or on a board over SSH with `remote`."""

from __future__ import annotations

import dataclasses

from edgekit.recipes.steps import Step, StepContext, StepOutcome, deployable
from edgekit.schema import option


@dataclasses.dataclass
class BenchConfig:
    """Options of the bench step."""

    runs: int = option(100, low=1, help="Minimum timed runs.")
    warmup: int = option(10, low=0, help="Untimed runs first.")
    threads: int | None = option(None, low=1, high=256, help="Runtime threads (default: the device profile's).")
    remote: str | None = option(None, help="Run on a board over SSH, e.g. pi@raspberrypi.local (key-based login).")
    remote_python: str = option("python3", help="The board's Python with edgekit[pi].")
    ssh_options: list[str] = option(factory=list, flag="--ssh-option", help="ssh -o options, e.g. Port=2222.")
    duration: float | None = option(None, low=0, help="Also run for at least this many seconds.")
    allow_fallback: bool = option(
        False, help="Run on the CPU when the device's delegate is missing (and say so in the results)."
    )


class BenchStep(Step):
    """Latency and memory of each model in a fresh process, with the host it was measured on."""

    name = "bench"
    Config = BenchConfig
    acts_on_all = True

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
