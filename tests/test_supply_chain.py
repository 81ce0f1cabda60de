"""Supply chain: every dependency is pinned by range, nothing installs packages or reaches the
network at run time except the documented model-fetch helper, and the device needs no network."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETWORK_MODULES = {"urllib", "urllib3", "requests", "httpx", "http", "socket", "ftplib", "aiohttp"}
# Subprocesses edgekit may start, by module: the fetch helper's `pip download`, the Edge TPU
# compiler, the fresh-process benchmark worker and ssh/scp to a board the user named, chroot into an
# emulated board, and debootstrap + pip for that board (edgekit board prepare).
ALLOWED_SUBPROCESS = {
    "edgekit/fetch.py", "edgekit/edgetpu.py", "edgekit/bench.py", "edgekit/board.py", "edgekit/board_prepare.py"
}  # fmt: skip
# Installs packages, but only into the emulated board's own venv, inside its chroot (never this host).
INSTALLS_INTO_A_BOARD = "edgekit/board_prepare.py"


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_dependency_has_a_lower_and_upper_bound() -> None:
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for _extra, items in project["optional-dependencies"].items():
        requirements += [r for r in items if not r.startswith("edgekit[")]
    loose = [r for r in requirements if not (re.search(r">=|==", r) and re.search(r"<|==", r))]
    assert loose == [] or loose == ["ruff>=0.6"], f"unbounded: {loose}"


def test_every_upper_bound_has_its_reason_in_a_comment() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    comments = " ".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line).lower()
    project = _pyproject()["project"]
    requirements = list(project["dependencies"]) + [
        r for items in project["optional-dependencies"].values() for r in items if not r.startswith("edgekit[")
    ]
    names = {re.split(r"[<>=\[]", r)[0].strip().lower() for r in requirements if "<" in r}
    unexplained = sorted(n for n in names if n not in comments and n.replace("-", "_") not in comments)
    assert unexplained == [], f"upper bounds without a reason in pyproject.toml comments: {unexplained}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_network_and_no_installs_at_run_time() -> None:
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        imports = _imports(path)
        assert not imports & NETWORK_MODULES, f"{relative} imports {imports & NETWORK_MODULES}"
        if "subprocess" in imports:
            assert relative in ALLOWED_SUBPROCESS, f"{relative} starts subprocesses"
        text = path.read_text()
        if relative == INSTALLS_INTO_A_BOARD:
            # pip and apt-get install only inside the board: the pip command is run by board.command([*pip,
            # the apt-get one is written inside a board.command([...]) call
            installs = [line.strip() for line in text.splitlines() if '"install"' in line]
            assert "board.command([*pip" in text and len(installs) == 2, installs
            assert all(line.startswith(("pip = [", "_run(board.command([")) for line in installs), installs
            continue
        assert "pip install" not in text.replace('pip install "edgekit', "").replace("pip install edgekit", "") or (
            relative.startswith("edgekit/cli/") or "fix=" in text
        ), f"{relative} mentions pip install outside an error message"
        assert '"install"' not in text, f"{relative} may run pip install"


def test_the_wheel_lists_every_package_and_ships_the_top_level_device_profiles() -> None:
    """The packages are listed (not found) so that devices/ can ship as edgekit.device_profiles; every
    folder of edgekit/ with code or data must be in that list, or the wheel (and a board) would lack it."""
    from edgekit.devices import builtin_profiles

    setuptools = _pyproject()["tool"]["setuptools"]
    on_disk = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "edgekit", *(ROOT / "edgekit").rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(f.is_file() for f in folder.iterdir())
    }
    assert set(setuptools["packages"]) == on_disk | {"edgekit.device_profiles"}
    assert setuptools["package-dir"] == {"edgekit.device_profiles": "devices"}
    shipped = sorted(f"{name}.yaml" for name in builtin_profiles())
    assert sorted(p.name for p in (ROOT / "devices").glob("*.yaml")) == shipped
