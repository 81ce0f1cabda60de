"""Recipe steps: one module per step, listed in STEPS.

A step has a typed Config (a dataclass whose fields are the YAML keys), says which model formats it
accepts and what it produces, and `run(config, context) -> StepOutcome`. Model-producing steps
(prune, convert, quantize, compile) act on the latest model; validate and bench act on every model
made so far.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgekit.formats import Format
from edgekit.schema import option

if TYPE_CHECKING:
    from edgekit.board import Board
    from edgekit.jsontypes import Json
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides
    from edgekit.recipes import Recipe

BoardOpencv = Literal["pip", "system"]

STEPS: dict[str, str] = {
    "prune": "edgekit.recipes.steps.prune:PruneStep",
    "convert": "edgekit.recipes.steps.convert:ConvertStep",
    "quantize": "edgekit.recipes.steps.quantize:QuantizeStep",
    "compile": "edgekit.recipes.steps.compile:CompileStep",
    "validate": "edgekit.recipes.steps.validate:ValidateStep",
    "bench": "edgekit.recipes.steps.bench:BenchStep",
}


StepInput = Literal["previous", "source"]
INPUT_HELP = "The model the step takes: previous (the latest one) or source (the recipe's source model)."


@dataclasses.dataclass
class BoardFields:
    """Where a step runs the models it checks: here (the default), in the device's emulated board
    (`emulate`), or on a real board over SSH (`remote`); shared by the validate and quantize configs."""

    device: str | None = option(
        None, flag="--device", help="The board's profile (rpi4, rpi5); default: the recipe's device."
    )
    emulate: bool = option(False, help="In the device's emulated board (QEMU arm64; prepared on first use).")
    remote: str | None = option(None, help="On a real board over SSH, e.g. pi@raspberrypi.local (key-based login).")
    remote_python: str = option("python3", help="The board's Python with edgekit[pi].")
    ssh_options: list[str] = option(factory=list, flag="--ssh-option", help="ssh -o options for remote.")
    board_opencv: BoardOpencv = option(
        "pip", help="With emulate: edgekit[pi] from pip, or Pi OS's apt OpenCV + numpy 1.x with tflite-runtime."
    )

    def open_board(self, default_device: str | None, progress: Callable[[str], None]) -> Board | None:
        """The board, prepared if emulated; None when the step runs here."""
        if not self.emulate and self.remote is None:
            return None
        from edgekit.board import BoardChoice

        device = self.device or default_device
        choice = BoardChoice(device, self.emulate, self.remote, self.remote_python, list(self.ssh_options))
        choice.opencv = self.board_opencv
        return choice.open(progress)


BOARD_FIELDS = tuple(field.name for field in dataclasses.fields(BoardFields))


@dataclasses.dataclass
class StepContext:
    """What a running step can see: the models so far, the recipe's data, device and load options."""

    source: Path  # the recipe's source model
    current: Path  # the latest model (the source before any model-producing step)
    models: list[Path]  # every model made so far by earlier steps, in order
    folder: Path  # this step's output folder
    calibration: Path | None
    validation: Path | None
    labelled: Path | None
    device: str
    count: int
    recipe: Recipe  # model options: load, preprocessing, labels
    progress: Callable[[str], None]
    output: Path | None = None  # a single-step command's -o (None there: the library's default name)
    single: bool = False  # True when a command runs this step alone (no run folder)
    force: bool = False  # a command's --force: replace an existing output

    @property
    def may_replace(self) -> bool:
        """May the step replace an existing output? In a run folder (the runner's own files) always;
        a command only with --force."""
        return self.force or not self.single

    def output_for(self, name: str) -> Path | None:
        """Where the step writes: the command's -o, the library default, or `name` in the run folder."""
        return self.output if self.single else self.folder / name


@dataclasses.dataclass
class StepOutcome:
    """A step's result: the model it wrote (if any) and the figures it measured."""

    output: Path | None = None
    metrics: Json = dataclasses.field(default_factory=dict)
    report: object = None  # the library's full report (a command prints it)
    error: Exception | None = None  # set when the step ran but failed its check (printed, then raised)


class Step:
    """Base class: subclasses set `name`, `Config`, `uses_data`, and implement `run`."""

    name = ""
    Config: type = object
    produces_model = False
    keeps_precision = False  # True: the model it writes has its input's precision (compile)
    uses_data: tuple[str, ...] = ()  # which of calibration / validation / labelled it reads
    acts_on_all = False  # True: reads every model so far (validate, bench)

    @classmethod
    def accepts(cls, fmt: Format, config: object) -> str | None:
        """None if the step can take a model of `fmt`, else why not."""
        return None

    @classmethod
    def produces(cls, fmt: Format, config: object) -> Format:
        """The format of the model this step writes from a `fmt` model."""
        return fmt

    @classmethod
    def check(cls, config: object, recipe: Recipe) -> list[str]:
        """Problems with this config that types alone do not catch."""
        return []

    def run(self, config: object, context: StepContext) -> StepOutcome:
        """Do the work."""
        raise NotImplementedError


def step_class(name: str) -> type[Step]:
    """The Step class registered under `name`."""
    module_name, _, attribute = STEPS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def run_single_step(
    name: str,
    config: object,
    model: Path,
    *,
    output: Path | None = None,
    models: list[Path] | None = None,
    load: LoadOptions | None = None,
    preprocess: PreprocessOverrides | None = None,
    labels: Path | None = None,
    data: dict[str, Path | None] | None = None,
    count: int | None = 200,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda _m: None,
    force: bool = False,
) -> StepOutcome:
    """Run one step on `model` as a one-step recipe: the code path of `edgekit convert/quantize/prune`."""
    from edgekit.loaders import LoadOptions
    from edgekit.preprocess import PreprocessOverrides
    from edgekit.recipes import Recipe, StepSpec

    data = data or {}
    recipe = Recipe(
        path=Path("<command line>"), name=name, model=str(model), source_format=None,
        load=load or LoadOptions(), preprocess=preprocess or PreprocessOverrides(), labels=labels,
        calibration=data.get("calibration"), validation=data.get("validation"), labelled=data.get("labelled"),
        count=count, device=device, steps=[StepSpec(name, config, 0)],
    )  # fmt: skip
    context = StepContext(
        source=model, current=model, models=list(models or []), folder=model.parent, calibration=recipe.calibration,
        validation=recipe.validation, labelled=recipe.labelled, device=device, count=count, recipe=recipe,
        progress=progress, output=output, single=True, force=force,
    )  # fmt: skip
    return step_class(name)().run(config, context)


def deployable(models: list[Path]) -> list[Path]:
    """The models a device runtime can run (ONNX and TFLite)."""
    from edgekit.formats import detect_format

    return [m for m in models if detect_format(m).deployable]
