"""`edgekit run MODEL --source SRC`: the live camera-loop classifier."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgekit.cli.options import board_target_options, force_option, json_option, model_argument, preprocessing_options

if TYPE_CHECKING:
    from edgekit.board import BoardChoice
    from edgekit.preprocess import PreprocessOverrides


@click.command("run")
@model_argument
@click.option(
    "--source",
    required=True,
    help="Camera index (0), /dev/videoN, picamera2[:N] (Pi camera module), rtsp:// or http:// URL, "
    "GStreamer pipeline, video, folder or image.",
)
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.0, help="Hide predictions below this probability.")
@click.option("--headless", is_flag=True, help="No window: one JSON line per frame on stdout.")
@click.option("--display", is_flag=True, help="Show a window with the overlay (needs a screen and OpenCV GUI).")
@click.option("--record", type=click.Path(path_type=Path), help="Write the annotated video (.mp4 or .avi).")
@force_option
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many frames.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after this many seconds.")
@click.option("--realtime", is_flag=True, help="Drop frames of files as a live camera would.")
@click.option("--loop", "loop_file", is_flag=True, help="Restart a video file or folder at its end.")
@click.option("--width", type=int, help="Camera width.")
@click.option("--height", type=int, help="Camera height.")
@click.option("--fps", type=float, help="Camera frame rate.")
@click.option("--fourcc", help="Camera pixel format, e.g. MJPG or YUYV.")
@click.option("--device", default="cpu", show_default=True, help="Device profile name (edgekit devices) or .yaml file.")
@click.option(
    "--allow-fallback", is_flag=True, help="Run on the CPU when the device's delegate is missing (and say so)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Inference workers taking frames in turn (default: one per core for files and folders, 1 for live sources).",
)
@click.option("--threads", type=click.IntRange(1, 256), help="Inference threads per worker.")
@board_target_options
@preprocessing_options
@json_option
def run_command(
    model: Path,
    board: BoardChoice | None,
    as_json: bool,
    source: str,
    headless: bool,
    display: bool,
    threads: int | None,
    workers: int | None,
    device: str,
    allow_fallback: bool,
    labels_file: Path | None,
    preprocess: PreprocessOverrides,
    width: int | None,
    height: int | None,
    fps: float | None,
    fourcc: str | None,
    loop_file: bool,
    **options: Any,
) -> None:
    """Classify live frames from SOURCE with MODEL, using its stored preprocessing and labels.

    With --emulate (the --device board under QEMU) or --remote USER@HOST the loop runs on the board."""
    if board is not None:
        _run_on_board(board, model, source, labels_file, options.get("record"), options.get("force", False))
        return
    import json
    import sys

    from edgekit.camera.loop import LoopOptions
    from edgekit.camera.run import display_available, run_classifier
    from edgekit.camera.sources import CaptureSettings
    from edgekit.convert.api import read_labels
    from edgekit.report import print_loop_summary, progress_printer

    show = display or (not headless and display_available())
    emit = (lambda r: print(json.dumps(r.to_dict()), flush=True)) if not show else (lambda r: None)
    with _interrupts_stop_the_loop() as wire_signals:
        try:
            summary = run_classifier(
                model, source, LoopOptions(**options), emit,
                capture=CaptureSettings(width, height, fps, fourcc, loop_file), display=show, threads=threads,
                workers=workers, device=device, allow_fallback=allow_fallback, preprocess=preprocess,
                labels=read_labels(labels_file), log=progress_printer(), on_loop=wire_signals,
            )  # fmt: skip
        except BrokenPipeError:
            sys.stderr.close()  # stdout reader went away (e.g. `| head`): nothing left to say
            return
    if as_json:  # the summary as the last JSON line, after the per-frame lines
        import dataclasses

        print(json.dumps({"summary": dataclasses.asdict(summary) | {"fps": summary.fps}}), flush=True)
    else:
        print_loop_summary(summary)


@contextlib.contextmanager
def _interrupts_stop_the_loop() -> Iterator[Callable[[Any], None]]:
    """Ctrl-C and SIGTERM stop the loop cleanly (with its summary and a playable recording); the
    caller's handlers come back afterwards (tests, embedding code), since these point at a finished loop."""
    import signal

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def wire_signals(loop: Any) -> None:
        for signum in previous:
            signal.signal(signum, lambda *_: loop.stop("interrupted"))

    try:
        yield wire_signals
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(signum, handler)


def _run_on_board(
    board: BoardChoice, model: Path, source: str, labels: Path | None, record: Path | None, force: bool
) -> None:
    """The same `run` on the board, headless; exits with its status."""
    from edgekit.camera.on_board import run_on_board
    from edgekit.cli.forward import forwarded_flags
    from edgekit.fsutil import refuse_to_replace
    from edgekit.report import progress_printer

    if record is not None:
        refuse_to_replace(record, force)
    log = progress_printer()
    opened = board.open(log)
    assert opened is not None  # board is set only with --emulate or --remote
    # copied and rewritten by run_on_board, or meaningless there
    skip = {"source", "labels_file", "record", "headless", "display", "emulate", "remote", "remote_python"}
    skip.update({"ssh_options", "board_opencv"})
    flags = forwarded_flags(click.get_current_context(), skip)
    log(f"running on {opened.describe()}" + (" (emulated: its timings are not the device's)" if board.emulate else ""))
    status = run_on_board(opened, model, source, flags, labels=labels, record=record)
    if status:
        raise SystemExit(status)
    if record is not None:
        log(f"recording copied to {record}")
