"""edgekit's error kinds, each with its documented exit code.

Library code raises these; the CLI turns them into one line on stderr and the exit code.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit reports to a user: one line saying what is wrong and the fix."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The message and its fix as one line."""
        return f"{self.message}: {self.fix}" if self.fix else self.message


def first_line(exc: BaseException, limit: int = 300, from_end: bool = False) -> str:
    """The first line of an exception's message, cut to `limit` characters (its end with `from_end`,
    where a library puts the useful part last); the exception's type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return lines[0][-limit:] if from_end else lines[0][:limit]


def did_you_mean(name: str, names: list[str]) -> str:
    """'did you mean X? ' for a mistyped or shortened name ('cuda' -> 'cuda-gpu', 'rpi' -> 'rpi4 or
    rpi5', 'rpi4x' -> 'rpi4'), or '' when nothing is close: the start of a fix message."""
    import difflib

    containing = [n for n in names if name.lower() in n.lower()]
    if 1 <= len(containing) <= 3:
        return f"did you mean {' or '.join(containing)}? "
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.7)
    return f"did you mean {found[0]}? " if found else ""


class DriftExceeded(EdgekitError):
    """A converted or quantized model differs from its source beyond the allowed budget."""

    exit_code = 1


class BadInput(EdgekitError):
    """A file, folder or option the user gave cannot be used."""

    exit_code = 3


class MissingDependency(EdgekitError):
    """An optional package is needed for this operation."""

    exit_code = 4

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(f"{what} needs {package}", fix=f'pip install "edgekit[{extra}]"')


class DeviceUnavailable(EdgekitError):
    """A requested accelerator, delegate or camera is not present."""

    exit_code = 5


class UnsupportedRoute(EdgekitError):
    """No sound conversion exists for this source, target or operator."""

    exit_code = 6


EXIT_CODES = {
    0: "success",
    1: "drift or check over budget",
    2: "usage error (bad command-line option)",
    3: "bad input (file, folder or option value)",
    4: "missing optional dependency",
    5: "device, delegate or camera unavailable",
    6: "unsupported conversion route or operator",
    70: "internal error (a bug: please report it with the -v output)",
    130: "interrupted (Ctrl-C); no partial output was kept",
}
