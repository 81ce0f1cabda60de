"""`edgekit bench --remote`: an OpenSSH server started here on 127.0.0.1 stands in for the board; the
remote side is a runtime-only (`edgekit[pi]`) virtual environment. Skipped when sshd is not installed."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.bench import BenchSettings, Remote, bench_remote
from edgekit.errors import DeviceUnavailable

SSHD = Path("/usr/sbin/sshd")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SSHD.exists() or shutil.which("ssh") is None, reason="OpenSSH server not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    (folder / "authorized_keys").chmod(0o600)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {folder / 'host_key'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "StrictModes no",
                "UsePAM no",
                f"PidFile {folder / 'sshd.pid'}",
            ]
        )
        + "\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if server.poll() is not None:
            pytest.skip(f"sshd could not start here: {server.stderr.read()[-300:]}")
        time.sleep(0.1)
    options = [
        f"Port={port}",
        f"IdentityFile={folder / 'client_key'}",
        "StrictHostKeyChecking=no",
        f"UserKnownHostsFile={folder / 'known_hosts'}",
        "LogLevel=ERROR",
    ]
    yield {"target": f"{getpass.getuser()}@127.0.0.1", "options": options}
    server.terminate()
    server.wait(timeout=10)


def test_bench_runs_on_the_board_and_brings_json_back(sshd: dict, pi_venv: Path, tiny_tflite: Path) -> None:
    remote = Remote(sshd["target"], str(pi_venv / "bin" / "python"), sshd["options"])
    results = bench_remote([tiny_tflite], BenchSettings(runs=20), remote)
    result = results[0]
    assert result.model == f"{sshd['target']}:tiny.tflite" and result.p50_ms > 0 and result.runs >= 20
    assert "ai-edge-litert" in result.runtime
    # measured by the board's runtime-only install, not by this test's environment
    assert "torch" not in result.host["runtimes"] and "tensorflow" not in result.host["runtimes"]


def test_board_without_edgekit_or_unreachable(sshd: dict, tiny_tflite: Path) -> None:
    with pytest.raises(DeviceUnavailable, match="cannot reach"):
        bench_remote([tiny_tflite], BenchSettings(runs=2), Remote("nobody@127.0.0.1", "python3", ["Port=1"]))
    broken = Remote(sshd["target"], "/nonexistent/python", sshd["options"])
    with pytest.raises(Exception, match="benchmark worker failed"):
        bench_remote([tiny_tflite], BenchSettings(runs=2), broken)
