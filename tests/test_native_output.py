"""quiet_native_output: native prints go to a log readable inside the block, and the log is removed
afterwards (each call used to leave an edgekit-native-*.log and an open descriptor behind)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekit.fsutil import log_tail, quiet_native_output


def _logs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("edgekit-native-*.log"))


def test_the_native_log_is_read_inside_and_removed_after() -> None:
    before, fds_before = _logs(), len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with quiet_native_output() as log:
            os.write(2, b"native noise on fd 2\n")
            assert log_tail(log) == "native noise on fd 2"
    assert _logs() - before == set()
    assert len(os.listdir("/proc/self/fd")) == fds_before
