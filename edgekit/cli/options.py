"""Options shared by several commands, and the small parsers behind them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

PRESET_NAMES = ["imagenet", "mobilenet", "unit"]


def _numbers(value: str | None, kind: type, flag: str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    try:
        return tuple(kind(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=flag) from None


def preprocessing_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--preset, --mean, --std, --input-size, --resize, --labels -> `preprocess=` and `labels_file=`."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        preset: str | None,
        mean: str | None,
        std: str | None,
        input_size: str | None,
        resize: str | None,
        **kwargs: Any,
    ) -> Any:
        return fn(*args, preprocess=build_preprocess(preset, mean, std, input_size, resize), **kwargs)

    decorators = [
        click.option("--preset", type=click.Choice(PRESET_NAMES), help="Normalisation preset (stored in the sidecar)."),
        click.option("--mean", help="Per-channel mean in [0,1] units, e.g. 0.485,0.456,0.406."),
        click.option("--std", help="Per-channel std in [0,1] units, e.g. 0.229,0.224,0.225."),
        click.option("--input-size", help="Image size H,W (or one number) when the model does not fix it."),
        click.option("--resize", type=click.Choice(["center-crop", "stretch"]), help="How photos are fitted."),
        click.option("--labels", "labels_file", type=click.Path(path_type=Path), help="Class names, one per line."),
    ]
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper


def load_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--arch, --arch-kwarg, --trust-pickle, --input-shape -> `load=` (a LoadOptions)."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        arch: str | None,
        arch_kwarg: tuple[str, ...],
        trust_pickle: bool,
        input_shape: str | None,
        **kwargs: Any,
    ) -> Any:
        return fn(*args, load=build_load(arch, arch_kwarg, trust_pickle, input_shape), **kwargs)

    decorators = [
        click.option("--arch", help="package.module:callable that builds the network for a .pth state dict."),
        click.option("--arch-kwarg", multiple=True, help="key=value passed to --arch (repeatable; YAML values)."),
        click.option(
            "--trust-pickle",
            is_flag=True,
            help="Allow unpickling a whole torch module. This runs code from the file: trusted files only.",
        ),
        click.option("--input-shape", help="Full input shape, e.g. 1,3,224,224, for models that do not record it."),
    ]
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper


def build_preprocess(
    preset: str | None, mean: str | None, std: str | None, input_size: str | None, resize: str | None
) -> Any:
    """PreprocessOverrides from the raw option values."""
    from edgekit.preprocess import PreprocessOverrides

    size = _numbers(input_size, int, "--input-size")
    if size is not None and len(size) == 1:
        size = (size[0], size[0])
    if size is not None and len(size) != 2:
        raise click.BadParameter("give H,W or one number", param_hint="--input-size")
    return PreprocessOverrides(
        preset=preset, mean=_numbers(mean, float, "--mean"), std=_numbers(std, float, "--std"), size=size, resize=resize
    )


def build_load(arch: str | None, arch_kwarg: tuple[str, ...], trust_pickle: bool, input_shape: str | None) -> Any:
    """LoadOptions from the raw option values."""
    import yaml

    from edgekit.loaders import LoadOptions

    kwargs = {}
    for item in arch_kwarg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--arch-kwarg")
        kwargs[key.strip()] = yaml.safe_load(value)
    return LoadOptions(
        arch=arch,
        arch_kwargs=kwargs,
        trust_pickle=trust_pickle,
        input_shape=_numbers(input_shape, int, "--input-shape"),
    )


def force_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--force: replace an existing output file (edgekit refuses otherwise)."""
    return click.option("--force", is_flag=True, help="Replace the output file if it exists.")(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json: print machine-readable JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")(fn)


def model_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The MODEL path argument (existence is checked by edgekit with a clearer message)."""
    return click.argument("model", type=click.Path(path_type=Path))(fn)


BOARD_OPTIONS = [
    click.option(
        "--device", "board_device", help="Run on this board's kernels (with --emulate or --remote): rpi4, rpi5."
    ),
    click.option("--emulate", is_flag=True, help="In the device's emulated board (QEMU arm64; prepared on first use)."),
    click.option("--remote", help="On a real board over SSH, e.g. pi@raspberrypi.local (key-based login)."),
    click.option("--remote-python", default="python3", show_default=True, help="The board's Python with edgekit[pi]."),
    click.option("--ssh-option", "ssh_options", multiple=True, help="ssh -o option for --remote (repeatable)."),
    click.option(
        "--board-opencv",
        type=click.Choice(["pip", "system"]),
        default="pip",
        show_default=True,
        help="With --emulate: edgekit[pi] from pip, or Pi OS's apt OpenCV + numpy 1.x with tflite-runtime.",
    ),
]


def board_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --emulate, --remote, --remote-python, --ssh-option, --board-opencv -> `board=BoardChoice(...)`."""
    return _with_board_options(fn, own_device=False)


def board_target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--emulate, --remote, --remote-python, --ssh-option, --board-opencv for a command whose own --device
    names the board -> `board=BoardChoice(...)`, or None when the command runs here."""
    return _with_board_options(fn, own_device=True)


def _with_board_options(fn: Callable[..., Any], own_device: bool) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        emulate: bool,
        remote: str | None,
        remote_python: str,
        ssh_options: tuple[str, ...],
        board_opencv: str,
        **kwargs: Any,
    ) -> Any:
        from edgekit.board import BoardChoice

        device = kwargs.get("device") if own_device else kwargs.pop("board_device")
        choice = BoardChoice(device, emulate, remote, remote_python, list(ssh_options), board_opencv)
        runs_here = own_device and not emulate and remote is None
        return fn(*args, board=None if runs_here else choice, **kwargs)

    for decorator in reversed(BOARD_OPTIONS[1:] if own_device else BOARD_OPTIONS):
        wrapper = decorator(wrapper)
    return wrapper
