"""The `edgekit` root command: lazy subcommands, -v, and EdgekitError -> one line + exit code."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from typing import Any

import click

# name -> "module:command"; modules are imported only when their command runs (fast --help).
COMMANDS = {
    "inspect": ("edgekit.cli.inspect_cmd:inspect_command", "Show a model's format, tensors, size, MACs and ops."),
    "convert": ("edgekit.cli.convert_cmd:convert_command", "Convert a model to ONNX or TFLite and verify it."),
    "prune": ("edgekit.cli.prune_cmd:prune_command", "Prune channels or weights, then train the model back."),
    "quantize": ("edgekit.cli.quantize_cmd:quantize_command", "Quantize to int8/fp16 with a drift budget."),
    "validate": ("edgekit.cli.validate_cmd:validate_command", "Measure drift of a model against its reference."),
    "classify": ("edgekit.cli.classify_cmd:classify_command", "Classify photos with a model (top-k labels)."),
    "run": ("edgekit.cli.run_cmd:run_command", "Classify live camera/video frames (the camera loop)."),
    "bench": ("edgekit.cli.bench_cmd:bench_command", "Measure latency and memory on a device, side by side."),
    "devices": ("edgekit.cli.devices_cmd:devices_command", "List device profiles and what this host has."),
    "board": ("edgekit.cli.board_cmd:board_group", "Prepare an emulated board (the device's ARM kernels)."),
    "compile": ("edgekit.cli.compile_cmd:compile_command", "Check a model for the Edge TPU and compile it."),
    "recipe": ("edgekit.cli.recipe_cmd:recipe_group", "Run or check a recipe: the whole chain in one file."),
    "report": ("edgekit.cli.recipe_cmd:report_command", "Regenerate the report of a recipe run folder."),
    "fetch": ("edgekit.cli.fetch_cmd:fetch_command", "Fetch the real example models and sample photos."),
}


INTERRUPTED = 130  # the shell's exit status for Ctrl-C (128 + SIGINT)


class EdgekitClickError(click.ClickException):
    """A ClickException printed as `edgekit: <message>` with edgekit's exit code."""

    def __init__(self, message: str, exit_code: int, trace: str | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.trace = trace

    def show(self, file: Any = None) -> None:
        """Print the traceback (only with -v) and the one-line message to stderr."""
        if self.trace:
            click.echo(self.trace, err=True, nl=False)
        click.echo(f"edgekit: {self.message}", err=True)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; turns errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Command names in a stable order."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module only now."""
        if cmd_name not in COMMANDS:
            return None
        module_name, _, attr = COMMANDS[cmd_name][0].partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their summaries without importing them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; EdgekitError and unexpected errors become one line (traceback with -v)."""
        from edgekit.errors import EdgekitError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EdgekitError as exc:
            disk = _disk_error_in(exc)  # a library may wrap a full disk in its own error
            if disk is not None:
                raise EdgekitClickError(_os_error_line(disk) or str(disk), 3, _trace(ctx)) from exc
            raise EdgekitClickError(exc.line(), exc.exit_code, _trace(ctx)) from exc
        except KeyboardInterrupt:
            raise EdgekitClickError("interrupted; no partial output was kept", INTERRUPTED, None) from None
        except OSError as exc:
            line = _os_error_line(exc)
            if line is None:
                raise EdgekitClickError(
                    f"unexpected {type(exc).__name__}: {exc} (rerun with -v)", 70, _trace(ctx)
                ) from exc
            raise EdgekitClickError(line, 3, _trace(ctx)) from exc
        except Exception as exc:
            message = (
                f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            )
            raise EdgekitClickError(
                f"{message} (rerun with -v for the traceback and report it)", 70, _trace(ctx)
            ) from exc


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _os_error_line(exc: OSError) -> str | None:
    """One line for the file-system failures a user can fix (full disk, no permission), else None."""
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in _DISK_FULL:
        return f"the disk is full{where} ({exc.strerror}): free space or choose another -o folder"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where} ({exc.strerror}): choose a writable -o folder"
    return None


def _disk_error_in(exc: BaseException) -> OSError | None:
    """The full-disk OSError behind `exc` (its cause chain, or an errno quoted in a wrapped message)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        for code in _DISK_FULL:
            if f"[Errno {code}]" in str(seen):
                return OSError(code, os.strerror(code))
        seen = seen.__cause__ or seen.__context__
    return None


def _trace(ctx: click.Context) -> str | None:
    return traceback.format_exc() if (ctx.obj or {}).get("verbose") else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks with errors.")
@click.version_option(package_name="edgekit")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """edgekit: get trained PyTorch and Keras vision models onto small devices.

    Exit codes: 0 ok, 1 drift over budget, 2 usage, 3 bad input, 4 missing optional
    dependency, 5 device unavailable, 6 unsupported route, 70 internal error, 130 interrupted.
    """
    ctx.obj = {"verbose": verbose}


def main() -> None:
    """Console-script entry point."""
    # OpenCV's own [ WARN ] lines (a camera or pipeline that does not open) would precede edgekit's one
    # line about it, and TensorFlow's C++ logging prints absl and oneDNN notices on every Keras command
    # (4 lines on stderr); -v keeps them.
    if "-v" not in sys.argv[1:2] and "--verbose" not in sys.argv[1:2]:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("EDGEKIT_QUIET_IMPORTS", "1")
    try:
        cli.main(prog_name="edgekit", args=sys.argv[1:])
    except SystemExit as exc:
        if exc.code != INTERRUPTED:
            raise
        # Ctrl-C can land while TensorFlow's or onnxruntime's threads are mid-call; their destructors at
        # interpreter exit then crashed now and then (SIGSEGV instead of exit 130). The partial output
        # is already removed and the message printed, so leave without running them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
