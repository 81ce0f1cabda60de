"""`edgekit run --emulate / --remote`: the camera loop itself runs on the board (its OpenCV, its
runtime, its kernels), headless; its JSON lines and summary come back to this terminal as they are
printed there, and a --record video is copied back when the loop ends."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from edgekit.board import Board, model_files
from edgekit.errors import DeviceUnavailable
from edgekit.fsutil import atomic_path


def run_on_board(
    board: Board,
    model: Path,
    source: str,
    flags: list[str],
    *,
    labels: Path | None = None,
    record: Path | None = None,
) -> int:
    """Run `edgekit run MODEL --source SOURCE --headless FLAGS` on `board`; its exit status.

    A source that is a file or folder here is copied to the board; a camera index, /dev/videoN or a
    URL is opened by the board itself (an emulated board shares this host's network).
    """
    with board.folder("edgekit-run") as folder:
        inside = PurePosixPath(folder.inside)
        local_source = Path(source).exists()
        folder.put([*model_files(model), *([labels] if labels else []), *([Path(source)] if local_source else [])])
        argv = [board.python, "-m", "edgekit", "run", str(inside / model.name), "--headless", *flags]
        argv += ["--source", str(inside / Path(source).name) if local_source else source]
        if labels:
            argv += ["--labels", str(inside / labels.name)]
        recording = f"recording{record.suffix}" if record else None
        if recording:
            argv += ["--record", str(inside / recording)]
        status = folder.run(argv, stream=True).returncode
        if record and recording and status == 0:
            with atomic_path(record) as partial:
                if not folder.get(recording, partial):
                    raise DeviceUnavailable(f"{board.describe()} wrote no recording", fix="run with -v")
        return status
