"""Running the TFLite converter: quietly, and with one clear error naming the log's tail on failure."""

from __future__ import annotations

from collections.abc import Callable

from edgekit.errors import UnsupportedRoute, first_line
from edgekit.fsutil import log_tail, quiet_native_output
from edgekit.interrupts import deferred_interrupt


def run_converter(convert: Callable[[], bytes], what: str = "the TFLite converter") -> bytes:
    """Call `convert` (e.g. converter.convert) with native output captured; UnsupportedRoute on failure."""
    with deferred_interrupt(what), quiet_native_output() as log:
        try:
            return convert()
        except Exception as exc:
            raise UnsupportedRoute(
                f"{what} failed ({first_line(exc, 200)})", fix=f"converter log: {log_tail(log)}"
            ) from exc
