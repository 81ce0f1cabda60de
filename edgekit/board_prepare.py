"""Prepare (and cache) an emulated arm64 board: debootstrap a Debian root filesystem, make a venv with
`edgekit[pi]` in it from this checkout (a wheel built here) or from PyPI. A half-made board (an
interrupted debootstrap) is kept under a `.partial` name and removed by the next prepare; edgekit is
reinstalled whenever the checkout's sources change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.board import (
    EMULATED_MARK,
    MARKER,
    ROOTFS_PACKAGES,
    VENVS,
    BoardVenv,
    ChrootBoard,
    Emulation,
    Progress,
    board_root,
    host_problems,
    source_digest,
)
from edgekit.errors import BadInput, DeviceUnavailable

MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def prepare_board(
    name: str, emulation: Emulation, progress: Progress, source: str = "checkout", opencv: str = "pip"
) -> ChrootBoard:
    """The emulated board for device `name`, made or brought up to date, with edgekit in the venv of
    `opencv` ("pip" or "system", see board.VENVS); DeviceUnavailable saying what to install when this
    host cannot."""
    if opencv not in VENVS:
        raise BadInput(f"unknown board OpenCV {opencv!r}", fix=f"use one of {', '.join(VENVS)}")
    problems = host_problems(emulation)
    if problems:
        raise DeviceUnavailable(
            f"cannot prepare the emulated {name}: {problems[0]}", fix="; ".join(problems[1:]) or None
        )
    root = board_root(emulation)
    board = ChrootBoard(name, emulation, root, VENVS[opencv])
    recorded = _recorded(root / MARKER)
    if recorded and recorded.get("rootfs") != ROOTFS_PACKAGES:
        progress("the board was made with other packages: making it again")
        shutil.rmtree(root)
    if not (root / "usr/bin/python3").exists():
        _bootstrap(board, progress)
    if board.venv.apt:
        _system_venv(board, progress)
    _install_edgekit(board, progress, source)
    (root / EMULATED_MARK).write_text(f"QEMU user mode, Debian {emulation.debian} {emulation.arch}\n")
    return board


def _recorded(marker: Path) -> dict:
    """A venv's marker in the board (what was installed), or {} before edgekit was installed there."""
    return json.loads(marker.read_text()) if marker.is_file() else {}


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1][:200]
        raise DeviceUnavailable(
            f"{what} failed ({detail})", fix="run with -v; check the network to the package registries"
        )
    return done.stdout


def _bootstrap(board: ChrootBoard, progress: Progress) -> None:
    """debootstrap into `<root>.partial`, then the venv, then rename: the cache never holds half a board."""
    root, emulation = board.root, board.emulation
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    progress(f"making a Debian {emulation.debian} {emulation.arch} root filesystem (debootstrap, about 3 minutes)")
    _run(
        ["debootstrap", f"--arch={emulation.arch}", "--variant=minbase", f"--include={ROOTFS_PACKAGES}",
         emulation.debian, str(partial), MIRROR],
        "debootstrap",
    )  # fmt: skip
    # pip inside checks certificates against this bundle (the rootfs's own fails on some hosts)
    for host_file in (Path("/etc/resolv.conf"), HOST_CA_BUNDLE):
        if host_file.is_file():
            (partial / host_file.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host_file, partial / host_file.relative_to("/"))
    progress("making the board's virtual environment")
    staging = ChrootBoard(board.name, emulation, partial)
    _run(staging.command(["/usr/bin/python3", "-m", "venv", VENVS["pip"].path]), "venv in the board")
    partial.rename(root)


def _system_venv(board: ChrootBoard, progress: Progress) -> None:
    """apt-get the venv's Debian packages in the board (once), then a venv that sees them."""
    venv = board.venv
    if _recorded(board.root / venv.marker).get("apt") != list(venv.apt):
        progress(f"apt-get install {' '.join(venv.apt)} in the board (under emulation, about 3 minutes)")
        _run(board.command(["dpkg", "--configure", "-a"]), "dpkg in the board")  # after an interrupted install
        _run(board.command(["apt-get", "update", "-q"]), "apt-get update in the board")
        _run(board.command(["apt-get", "install", "-y", "-q", "--no-install-recommends", *venv.apt]), "apt-get install")
        _run(board.command(["apt-get", "clean"]), "apt-get clean in the board")
        (board.root / venv.marker).unlink(missing_ok=True)  # edgekit goes in again below
    if not (board.root / venv.python.lstrip("/")).exists():
        _run(board.command(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv.path]), "venv")


def _project() -> Path | None:
    """The checkout edgekit runs from, if it is one (it has a pyproject.toml naming edgekit)."""
    project = Path(__file__).resolve().parents[1]
    pyproject = project / "pyproject.toml"
    return project if pyproject.is_file() and 'name = "edgekit"' in pyproject.read_text() else None


def _install_edgekit(board: ChrootBoard, progress: Progress, source: str) -> None:
    """pip install edgekit (and the venv's runtimes) in the board: a wheel of this checkout, or the
    release from PyPI."""
    project = _project()
    if source == "checkout" and project is None:
        raise BadInput("edgekit is not running from a checkout", fix="use --from pypi")
    venv = board.venv
    digest = source_digest(project) if source == "checkout" and project else "pypi"
    marker = board.root / venv.marker
    if _recorded(marker).get("digest") == digest:
        return
    pip = [venv.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--cert", str(HOST_CA_BUNDLE)]
    with tempfile.TemporaryDirectory(prefix="edgekit-wheel-", dir=board.root / "tmp") as tmp:
        if source == "checkout":
            progress("building an edgekit wheel from this checkout")
            _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "-w", tmp, str(project)], "building the edgekit wheel")  # fmt: skip
            edgekit = f"/tmp/{Path(tmp).name}/{next(Path(tmp).glob('edgekit-*.whl')).name}"
        else:
            edgekit = "edgekit"
        progress(f"installing edgekit in the board's {venv.path} (pip under emulation, minutes the first time)")
        for requirement in _requirements(venv, edgekit, first=not marker.is_file()):
            _run(board.command([*pip, *requirement]), "pip install in the board")
    packages = _run(board.command([venv.python, "-m", "pip", "freeze"]), "pip freeze in the board").split()
    record = {"digest": digest, "rootfs": ROOTFS_PACKAGES, "apt": list(venv.apt), "packages": packages}
    marker.write_text(json.dumps(record, indent=1))


def _requirements(venv: BoardVenv, edgekit: str, first: bool) -> list[list[str]]:
    """The pip installs that put `edgekit` (a wheel path or the PyPI name) into `venv`."""
    if venv.apt:  # edgekit's own dependencies come from apt
        return [*([list(venv.pip)] if first else []), ["--force-reinstall", "--no-deps", edgekit]]
    if first:
        return [[f"{edgekit}[pi]"]]
    return [["--force-reinstall", "--no-deps", edgekit] if edgekit != "edgekit" else ["--upgrade", "edgekit[pi]"]]
