"""Boards in the loop: run a model on the device's own kernels, in an emulated arm64 board (QEMU user
mode in a Debian chroot) or on a real one over SSH, and bring the outputs back.

int8 kernels differ between x86 and ARM (XNNPACK and onnxruntime pick other code paths on a
Cortex-A72 than on an AVX-512 host), so drift measured on the workstation is not the drift the
user gets on the Pi. An emulated board runs the ARM kernels themselves: its outputs are the
device's, its timings are meaningless (~300x slower than the real chip) and are never reported.

The emulated board is a Debian arm64 root filesystem made by debootstrap (bookworm, what Raspberry
Pi OS is built on) with a venv holding `edgekit[pi]` (no torch, no TensorFlow), cached under
~/.cache/edgekit/boards/. QEMU_CPU picks the emulated core (cortex-a72 for a Pi 4, cortex-a76 for
a Pi 5). The host's /proc and /sys are not bound into the chroot: onnxruntime and LiteRT would read
the host's x86 cpuinfo there and crash in cpuinfo's init.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np

from edgekit.errors import BadInput, DeviceUnavailable
from edgekit.runtimes import Runner, feeds_key

if TYPE_CHECKING:
    from edgekit.artifact import ModelArtifact, TensorSpec
    from edgekit.bench import Remote

Progress = Callable[[str], None]
# openssh-server: `bench --remote` reaches the emulated board over SSH on 127.0.0.1, as it reaches a Pi.
ROOTFS_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,openssh-server"


@dataclasses.dataclass(frozen=True)
class BoardVenv:
    """One of the board's Python environments with edgekit in it."""

    path: str
    marker: str  # what was installed there, in the board's root
    apt: tuple[str, ...] = ()  # Debian packages it takes from the system (venv --system-site-packages)
    pip: tuple[str, ...] = ("edgekit[pi]",)  # what pip adds (edgekit itself: from the checkout or PyPI)

    @property
    def python(self) -> str:
        """Its Python."""
        return f"{self.path}/bin/python"


# "pip": `pip install edgekit[pi]` (pip's numpy 2, opencv-python-headless, ai-edge-litert).
# "system": as on Raspberry Pi OS with its own OpenCV: apt's python3-opencv (GStreamer, V4L2) and numpy
# 1.24, seen through --system-site-packages, with tflite-runtime (built for numpy 1.x) and onnxruntime;
# edgekit is installed with --no-deps, since pip cannot see that apt's cv2 is opencv-python-headless.
SYSTEM_APT = (
    *("python3-numpy", "python3-opencv", "python3-click", "python3-rich", "python3-yaml"),
    *("gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good"),  # videoconvert, appsink; v4l2src
)
VENVS = {
    "pip": BoardVenv("/opt/edgekit", ".edgekit-board.json"),
    "system": BoardVenv(
        "/opt/edgekit-system",
        ".edgekit-board-system.json",
        apt=SYSTEM_APT,
        pip=("tflite-runtime", "onnxruntime"),
    ),
}
MARKER = VENVS["pip"].marker
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOARD_PYTHON = VENVS["pip"].python
EMULATED_MARK = "etc/edgekit-emulated"  # inside the board: host_facts() labels figures measured there


@dataclasses.dataclass(frozen=True)
class Emulation:
    """How a device profile's CPU is emulated: the QEMU CPU model, architecture and Debian release."""

    cpu: str
    arch: str = "arm64"
    debian: str = "bookworm"

    @classmethod
    def from_profile(cls, name: str, emulate: dict[str, str] | None) -> Emulation:
        """The profile's `emulate:` block; BadInput when the profile has none."""
        if not emulate or not emulate.get("cpu"):
            raise BadInput(f"device {name} has no emulated board", fix="use --emulate with rpi4 or rpi5")
        unknown = sorted(set(emulate) - {"cpu", "arch", "debian"})
        if unknown or emulate.get("arch", "arm64") != "arm64":
            raise BadInput(f"device {name}: emulate takes cpu, arch (arm64), debian", fix="fix the profile")
        return cls(emulate["cpu"], emulate.get("arch", "arm64"), emulate.get("debian", "bookworm"))

    @property
    def qemu(self) -> str:
        """The qemu-user architecture name."""
        return {"arm64": "aarch64"}[self.arch]


class BoardFolder(Protocol):
    """A temporary folder on a board, and a way to run commands there."""

    inside: str  # the folder's path as the board sees it

    def put(self, paths: list[Path]) -> None:
        """Copy files or folders into the folder (keeping their names)."""

    def get(self, name: str, dest: Path) -> bool:
        """Copy the folder's file `name` to `dest` here; False when the board has no such file."""

    def run(self, argv: list[str], stream: bool = False) -> subprocess.CompletedProcess:
        """Run `argv` on the board; `stream`: its output goes to ours as it comes (and is not kept)."""


class Board(Protocol):
    """Somewhere a model can be run on the device's kernels."""

    python: str  # the board's Python that has edgekit[pi]

    def describe(self) -> str:
        """Where it runs, e.g. 'emulated rpi4 (QEMU cortex-a72, Debian bookworm arm64)'."""

    def folder(self, prefix: str) -> contextlib.AbstractContextManager[BoardFolder]:
        """A temporary folder there, removed afterwards."""


def run_worker(
    board: Board, artifact: ModelArtifact, inputs: np.ndarray, threads: int | None
) -> tuple[np.ndarray, dict]:
    """Run the model on each of `inputs` (N, *input shape) on the board; output 0 of each, and its facts.
    The board reads the model's tensors from a sidecar written from `artifact` (it may lack the
    packages that read them from the graph, and a candidate being made has no sidecar yet)."""
    model = artifact.path
    with board.folder("edgekit-board") as folder, tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "inputs.npy", inputs)
        sidecar = Path(tmp) / (model.name + ".edgekit.json")
        sidecar.write_text(json.dumps(artifact.to_dict()))
        folder.put([model, sidecar, Path(tmp) / "inputs.npy"])
        inside = Path(folder.inside)
        request = {
            "model": str(inside / model.name),
            "inputs": str(inside / "inputs.npy"),
            "outputs": str(inside / "outputs.npy"),
            "threads": threads,
        }
        done = folder.run([board.python, "-m", "edgekit.board_worker", json.dumps(request)])
        outputs = Path(tmp) / "outputs.npy"
        if done.returncode == 0:
            folder.get("outputs.npy", outputs)
        return _worker_result(done, outputs, board.describe())


def model_files(model: Path) -> list[Path]:
    """The model and its sidecar, when it has one."""
    sidecar = model.with_name(model.name + ".edgekit.json")
    return [model, *([sidecar] if sidecar.is_file() else [])]


def stream_output(command: list[str]) -> subprocess.CompletedProcess:
    """Run `command`, passing its stdout and stderr line by line to ours (sys.stdout may be a capture)."""
    import sys
    import threading

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def pump(stream: IO[str], to: IO[str]) -> None:
        """Copy lines as they come (the loop prints one per frame)."""
        for line in stream:
            to.write(line)
            to.flush()

    errors = threading.Thread(target=pump, args=(process.stderr, sys.stderr), daemon=True)
    errors.start()
    pump(process.stdout, sys.stdout)  # type: ignore[arg-type]
    errors.join()
    return subprocess.CompletedProcess(command, process.wait(), "", "")


def board_root(emulation: Emulation) -> Path:
    """Where the emulated board's root filesystem is cached."""
    from edgekit.fetch import cache_dir

    return cache_dir() / "boards" / f"{emulation.debian}-{emulation.arch}"


def host_problems(emulation: Emulation) -> list[str]:
    """What this host lacks to prepare and run an emulated board (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the emulated board needs root (debootstrap and chroot): run as root, e.g. with sudo")
    if shutil.which("debootstrap") is None:
        problems.append("debootstrap is not installed: apt-get install debootstrap")
    if not Path(f"/proc/sys/fs/binfmt_misc/qemu-{emulation.qemu}").exists():
        problems.append(
            f"QEMU is not registered for {emulation.qemu} binaries: apt-get install qemu-user-static "
            "binfmt-support, then mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc and "
            f"update-binfmts --enable qemu-{emulation.qemu}"
        )
    return problems


# What /proc/cpuinfo says on the real boards (Pi 4: BCM2711, Pi 5: BCM2712). Written into the board's
# /proc and /sys (plain files: nothing of the host is mounted there) so that the runtimes' cpuinfo
# library recognises the core and picks the kernels it would pick on the device; without them
# onnxruntime and XNNPACK only warn and fall back to generic detection.
CPUINFO = {
    "cortex-a72": {"features": "fp asimd evtstrm crc32 cpuid", "variant": "0x0", "part": "0xd08", "revision": "3"},
    "cortex-a76": {
        "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp",
        "variant": "0x4",
        "part": "0xd0b",
        "revision": "1",
    },
}
CORES = 4


def cpuinfo_text(cpu: str) -> str | None:
    """/proc/cpuinfo of a 4-core board with this core, or None for a core without a record."""
    info = CPUINFO.get(cpu)
    if info is None:
        return None
    block = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n"
    )
    return "\n".join(block.format(n=n, **info) for n in range(CORES))


@dataclasses.dataclass
class ChrootBoard:
    """An emulated board: the cached root filesystem, run with QEMU_CPU set to the profile's core."""

    name: str
    emulation: Emulation
    root: Path
    venv: BoardVenv = VENVS["pip"]

    def describe(self) -> str:
        """e.g. 'emulated rpi4 (QEMU cortex-a72, Debian bookworm arm64)'."""
        e = self.emulation
        opencv = ", system OpenCV" if self.venv.apt else ""
        return f"emulated {self.name} (QEMU {e.cpu}, Debian {e.debian} {e.arch}{opencv})"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the board with a clean environment."""
        env = [f"PATH={PATH}", "HOME=/root", f"QEMU_CPU={self.emulation.cpu}", "LC_ALL=C.UTF-8"]
        env.append("DEBIAN_FRONTEND=noninteractive")
        return ["chroot", str(self.root), "/usr/bin/env", "-i", *env, *argv]

    def describe_cpu(self) -> None:
        """Write the emulated core's /proc/cpuinfo and CPU lists into the board (see CPUINFO)."""
        text = cpuinfo_text(self.emulation.cpu)
        if text is None:
            return
        (self.root / "proc").mkdir(exist_ok=True)
        (self.root / "proc" / "cpuinfo").write_text(text)
        cpus = self.root / "sys" / "devices" / "system" / "cpu"
        cpus.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (cpus / name).write_text(f"0-{CORES - 1}\n")

    @property
    def python(self) -> str:
        """The venv's Python inside the board."""
        return self.venv.python

    @contextlib.contextmanager
    def folder(self, prefix: str) -> Iterator[ChrootFolder]:
        """A folder under the board's /tmp (its cpuinfo written first, see describe_cpu)."""
        self.describe_cpu()
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir=self.root / "tmp") as tmp:
            yield ChrootFolder(Path(tmp), self)


@dataclasses.dataclass
class HostFolder:
    """A board's folder that is a folder on this host (`here`): files are copied in and out."""

    here: Path

    def put(self, paths: list[Path]) -> None:
        """Copy files or folders in."""
        for path in paths:
            if path.is_dir():
                shutil.copytree(path, self.here / path.name)
            else:
                shutil.copyfile(path, self.here / path.name)

    def get(self, name: str, dest: Path) -> bool:
        """Copy a file out."""
        if not (self.here / name).is_file():
            return False
        shutil.copyfile(self.here / name, dest)
        return True


@dataclasses.dataclass
class ChrootFolder(HostFolder):
    """A folder in an emulated board's /tmp, seen from here as `here`."""

    board: ChrootBoard

    @property
    def inside(self) -> str:
        """The folder's path in the board."""
        return str(Path("/tmp") / self.here.name)

    def run(self, argv: list[str], stream: bool = False) -> subprocess.CompletedProcess:
        """Run in the chroot under QEMU."""
        command = self.board.command(argv)
        if stream:
            return stream_output(command)
        return subprocess.run(command, capture_output=True, text=True, check=False)


@dataclasses.dataclass
class SshBoard:
    """A real board reached over SSH (key-based), with `edgekit[pi]` in its `python`."""

    remote: Remote

    def describe(self) -> str:
        """e.g. 'pi@raspberrypi.local over SSH'."""
        return f"{self.remote.target} over SSH"

    @property
    def python(self) -> str:
        """The board's Python (--remote-python)."""
        return self.remote.python

    @contextlib.contextmanager
    def folder(self, prefix: str) -> Iterator[SshFolder]:
        """mktemp -d on the board, removed afterwards."""
        from edgekit.bench import remote_workdir

        with remote_workdir(self.remote, prefix) as workdir:
            yield SshFolder(self.remote, workdir)


@dataclasses.dataclass
class SshFolder:
    """A folder on a board reached over SSH."""

    remote: Remote
    inside: str

    def put(self, paths: list[Path]) -> None:
        """scp (-r for folders) into the folder."""
        from edgekit.bench import _checked

        remote = self.remote
        _checked(["scp", "-q", "-r", *remote.ssh_args(), *map(str, paths), f"{remote.target}:{self.inside}/"], remote)

    def get(self, name: str, dest: Path) -> bool:
        """scp a file back."""
        from edgekit.bench import _checked

        remote, source = self.remote, f"{self.remote.target}:{self.inside}/{name}"
        done = subprocess.run(["scp", "-q", *remote.ssh_args(), source, str(dest)], capture_output=True, check=False)
        if done.returncode != 0:
            _checked(["ssh", *remote.ssh_args(), remote.target, "true"], remote)  # unreachable: say so
        return done.returncode == 0

    def run(self, argv: list[str], stream: bool = False) -> subprocess.CompletedProcess:
        """ssh the command (quoted for the board's shell)."""
        command = ["ssh", *self.remote.ssh_args(), self.remote.target, shlex.join(argv)]
        if stream:
            return stream_output(command)
        return subprocess.run(command, capture_output=True, text=True, check=False)


def _worker_result(done: subprocess.CompletedProcess, outputs: Path, where: str) -> tuple[np.ndarray, dict]:
    """The worker's outputs and facts, or its one-line error."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    reply = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or "error" in reply or not outputs.is_file():
        detail = reply.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise DeviceUnavailable(f"the model could not run on {where}: {detail}", fix=reply.get("fix") or "run with -v")
    return np.load(outputs), reply


def source_digest(project: Path) -> str:
    """A digest of the edgekit sources and pyproject of a checkout (the board reinstalls on change)."""
    digest = hashlib.sha256()
    for path in sorted([project / "pyproject.toml", *(project / "edgekit").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(project)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class BoardRunner(Runner):
    """A model's outputs computed on a board for a known set of inputs, served as a Runner (the
    comparison engine then treats the device like any other runtime). Inputs it was not given fail.
    Its output meaning is the artifact's record (the base class reads no graph)."""

    @classmethod
    def beside(cls, local: Runner, board: Board, inputs: list[np.ndarray], threads: int | None) -> BoardRunner:
        """The board's run of the model `local` (a Runner opened here) has open, with the tensor
        specs and output meaning read here (the board's install may lack the onnx package)."""
        from edgekit.output_meaning import with_meaning

        assert local.artifact is not None  # set by open_runner
        artifact = dataclasses.replace(
            local.artifact, inputs=local.inputs(), outputs=with_meaning(local.outputs(), local)
        )
        return cls(artifact, board, inputs, threads)

    def __init__(
        self, artifact: ModelArtifact, board: Board, inputs: list[np.ndarray], threads: int | None = None
    ) -> None:
        self.artifact = artifact
        outputs, self.facts = run_worker(board, artifact, np.stack(inputs), threads)
        self._by_input = {feeds_key([x]): out for x, out in zip(inputs, outputs)}
        self._where = board.describe()

    def inputs(self) -> list[TensorSpec]:
        """The inputs recorded in the model's sidecar."""
        return self.artifact.inputs if self.artifact else []

    def outputs(self) -> list[TensorSpec]:
        """The outputs recorded in the model's sidecar."""
        return self.artifact.outputs if self.artifact else []

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """The board's output for this input."""
        key = feeds_key(feeds)
        if key not in self._by_input:
            raise BadInput("this input was not run on the board", fix="report this as an edgekit bug")
        return [self._by_input[key]]

    def describe(self) -> str:
        """The board's runtime and where it ran, e.g. 'ai-edge-litert 2.3.0 (XNNPACK) on emulated rpi4 (...)'."""
        return f"{self.facts.get('runtime', 'unknown runtime')} on {self._where}"


@dataclasses.dataclass
class BoardChoice:
    """Where the user asked a model to run: nowhere special (this host), an emulated board, or SSH."""

    device: str | None = None
    emulate: bool = False
    remote: str | None = None  # user@host
    remote_python: str = "python3"
    ssh_options: list[str] = dataclasses.field(default_factory=list)
    opencv: str = "pip"  # the emulated board's venv (VENVS): pip's OpenCV, or the system's as on Pi OS

    def fields(self) -> dict[str, object]:
        """The choice as a step config's BoardFields values."""
        return {"device": self.device, "emulate": self.emulate, "remote": self.remote,
                "remote_python": self.remote_python, "ssh_options": list(self.ssh_options),
                "board_opencv": self.opencv}  # fmt: skip

    def open(self, progress: Progress) -> Board | None:
        """The board, prepared if it is an emulated one; None for this host."""
        if self.remote is None and not self.emulate and self.device is None:
            return None
        from edgekit.bench import Remote

        remote = Remote(self.remote, self.remote_python, list(self.ssh_options)) if self.remote else None
        if remote is None and self.device is None:
            raise BadInput("--emulate needs --device NAME (rpi4, rpi5)", fix="add --device rpi4")
        return open_board(self.device or "", self.emulate, remote, progress, self.opencv)


def open_board(device: str, emulate: bool, remote: Remote | None, progress: Progress, opencv: str = "pip") -> Board:
    """The board to run on: the profile's emulated board (prepared if needed), or a real one over SSH."""
    from edgekit.devices import load_profile

    if remote is not None:
        return SshBoard(remote)
    profile = load_profile(device)
    if not emulate:
        raise BadInput(f"--device {device} alone runs nothing on the board", fix="add --emulate or --remote USER@HOST")
    from edgekit.board_prepare import prepare_board

    return prepare_board(profile.name, Emulation.from_profile(profile.name, profile.emulate), progress, opencv=opencv)
