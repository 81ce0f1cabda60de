"""Atomic file output: write to a temporary name in the target directory, then rename."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgekit.errors import BadInput


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def check_output_dir(path: Path) -> None:
    """Raise BadInput unless the directory that will hold `path` exists and is writable."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BadInput(f"output folder {parent} does not exist", fix="create it or choose another -o path")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"output folder {parent} is not writable", fix="choose another -o path")


def refuse_to_replace(path: Path, force: bool) -> None:
    """BadInput when `path` exists and `force` is off: edgekit never overwrites a file unasked."""
    if path.exists() and not force:
        from edgekit.errors import BadInput

        raise BadInput(f"{path} already exists", fix="pass --force to replace it, or choose another -o path")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place, on failure delete it.

    The temporary name keeps the suffix so that libraries which dispatch on it still work, and
    starts with a dot so that a half-written file is never mistaken for a finished model.
    """
    check_output_dir(path)
    remove_stale_partials(path)
    prefix = f".{path.stem}.{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=f".partial{path.suffix}", dir=path.resolve().parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_UMASK)  # mkstemp made it private (0600)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete temporary files for `path` left by edgekit processes that no longer run (killed with
    SIGKILL or by a power cut, which no cleanup handler survives); return what was removed."""
    removed = []
    for candidate in path.resolve().parent.glob(f".{path.stem}.*.partial{path.suffix}"):
        pid_text = candidate.name[len(path.stem) + 2 :].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            remove_path(candidate)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_path(path: Path) -> None:
    """Delete a file or directory if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def files_of(path: Path) -> list[Path]:
    """The file itself, or every file in a directory (a SavedModel) in sorted order."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def size_of(path: Path) -> int:
    """Bytes of a model file, or of every file in a model directory."""
    return sum(file.stat().st_size for file in files_of(path))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, or of every file in a directory in sorted order."""
    digest = hashlib.sha256()
    for file in files_of(path):
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_native_output() -> Iterator[Path]:
    """Send what native libraries print on fd 1 and 2 to a log file for the duration.

    TensorFlow's converter and torch's exporter print pages of progress from C++; edgekit shows
    its own progress instead and quotes the log's tail when a step fails (read it inside the block:
    the log is removed when the block ends; every call used to leave one in the temp folder).
    """
    handle, name = tempfile.mkstemp(prefix="edgekit-native-", suffix=".log")
    os.close(handle)
    log = Path(name)
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "wb") as sink:
            try:
                for fd in (1, 2):
                    os.dup2(sink.fileno(), fd)
                yield log
            finally:
                for fd, old in zip((1, 2), saved):
                    os.dup2(old, fd)
                    os.close(old)
    finally:
        log.unlink(missing_ok=True)


def log_tail(log: Path, lines: int = 3) -> str:
    """The last non-empty lines of a native log, joined for a one-line error."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())
