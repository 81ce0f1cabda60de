"""`edgekit validate REFERENCE CANDIDATE --data DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgekit.cli.options import board_options, json_option, load_options, preprocessing_options

if TYPE_CHECKING:
    from edgekit.board import BoardChoice


@click.command("validate")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Images: folder (folder-per-class gives labels), video or .npy.",
)
@click.option("--count", type=click.IntRange(1), help="Use at most this many samples (seeded).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--labels-csv", type=click.Path(path_type=Path), help="CSV of filename,label for accuracy.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), help="Minimum top-1 agreement.")
@click.option("--min-top5-agreement", type=click.FloatRange(0, 1), help="Minimum top-5 agreement.")
@click.option(
    "--min-confident-agreement", type=click.FloatRange(0, 1), help="Minimum agreement where the reference is confident."
)
@click.option("--max-kl", type=click.FloatRange(0), help="Maximum mean KL divergence.")
@click.option("--max-accuracy-drop", type=click.FloatRange(0), help="Maximum accuracy drop in points (needs labels).")
@click.option("--max-drift", "budget", help="All limits in one spec, e.g. agreement=0.95,kl=0.05.")
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Reference probability above which an image counts as confident.",
)
@click.option("--threads", type=click.IntRange(1, 256), help="Runtime threads.")
@board_options
@load_options
@preprocessing_options
@json_option
def validate_command(
    reference: Path,
    candidate: Path,
    data: Path,
    count: int | None,
    labels_csv: Path | None,
    budget: str | None,
    load: Any,
    preprocess: Any,
    labels_file: Path | None,
    as_json: bool,
    board: BoardChoice,
    **options: Any,
) -> None:
    """Compare CANDIDATE with REFERENCE on the same images; exit 1 when a limit is broken."""
    from edgekit.recipes.steps import run_single_step
    from edgekit.recipes.steps.validate import ValidateConfig
    from edgekit.report import print_json, print_validation, progress_printer

    config = ValidateConfig(
        max_drift=budget, labels_csv=str(labels_csv) if labels_csv else None, device=board.device,
        emulate=board.emulate, remote=board.remote, remote_python=board.remote_python,
        ssh_options=board.ssh_options, board_opencv=board.opencv, **options,
    )  # fmt: skip
    outcome = run_single_step(
        "validate", config, reference, models=[candidate], load=load, preprocess=preprocess, labels=labels_file,
        data={"validation": data}, count=count, progress=progress_printer(quiet=as_json),
    )  # fmt: skip
    report = outcome.report[0]
    print_json(report.to_dict()) if as_json else print_validation(report, f"{candidate.name} vs {reference.name}")
    if outcome.error is not None:
        raise outcome.error
