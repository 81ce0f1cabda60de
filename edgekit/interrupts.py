"""Ctrl-C held until a framework call returns.

Python raises KeyboardInterrupt at the next bytecode, which can be deep inside TensorFlow's or
torch's own Python code while their C++ state is half built (a graph being traced, an exporter's
frame hooks); unwinding from there crashed the process now and then (SIGSEGV instead of exit 130,
and no cleanup). Inside `deferred_interrupt` the first Ctrl-C only says that edgekit will stop, and
KeyboardInterrupt is raised when the call returns, from edgekit's code; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def deferred_interrupt(what: str) -> Iterator[None]:
    """Hold SIGINT while `what` runs, then raise KeyboardInterrupt if one came. Does nothing outside
    the main thread or when someone else handles SIGINT (the camera loop, an ignored signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    terminal = os.dup(2)  # fd 2 may be redirected to a native log inside the block

    def hold(signum: int, frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        with contextlib.suppress(OSError):
            os.write(terminal, f"edgekit: interrupting once {what} returns (Ctrl-C again to stop now)\n".encode())

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(terminal)
    if received:
        raise KeyboardInterrupt
