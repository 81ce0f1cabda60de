"""`prune_model`: structured or unstructured pruning of a PyTorch or Keras model, with recovery.

One pruner module per framework family, listed in PRUNERS. Each exposes
`prune(artifact, options, load, progress) -> PruneReport` and writes a model of the input's kind.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput
from edgekit.formats import Family, Format
from edgekit.fsutil import refuse_to_replace
from edgekit.loaders import LoadOptions
from edgekit.preprocess import PreprocessOverrides
from edgekit.prune.settings import RECOVERY_MODES, PruneSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgekit.jsontypes import Json

PRUNERS: dict[Family, str] = {
    Family.TORCH: "edgekit.prune.torch_prune:prune",
    Family.KERAS: "edgekit.prune.keras_prune:prune",
}


@dataclasses.dataclass
class RecoverOptions:
    """How a pruned model is trained back: distillation from the original, or fine-tuning with labels."""

    mode: str  # "distill" (unlabeled images) or "finetune" (class folders)
    data: Path
    epochs: int = 10
    lr: float | None = None  # None: recover.DEFAULT_LR, or REFIT_LR after a refit
    batch_size: int = 32
    temperature: float = 2.0
    patience: int = 3  # epochs without improvement before stopping
    flip: bool = True  # random horizontal flips
    count: int | None = None  # images read from `data` (None: all)
    holdout: float = 0.2  # share of `data` kept out of training to measure agreement/accuracy

    def __post_init__(self) -> None:
        if self.mode not in RECOVERY_MODES:
            raise BadInput(f"recovery {self.mode!r} is not one of {', '.join(RECOVERY_MODES)}", fix="--recover distill")
        if not self.data.exists():
            raise BadInput(f"recovery data {self.data} does not exist", fix="give a folder of images with --data")
        if self.epochs < 1 or self.batch_size < 1 or (self.lr is not None and self.lr <= 0) or self.temperature <= 0:
            raise BadInput("recovery epochs, batch size, learning rate and temperature must be positive")
        if not 0 < self.holdout < 1:
            raise BadInput(f"--holdout {self.holdout} must be between 0 and 1", fix="e.g. 0.2")


@dataclasses.dataclass
class PruneOptions:
    """What to prune and how."""

    amount: float  # share of channels (structured) or weights (unstructured) removed
    method: str = "structured"
    importance: str = "l2"  # l1 / l2 magnitude, or taylor (needs --data)
    round_to: int = 8  # structured: keep channel counts a multiple of this
    ignore: list[str] = dataclasses.field(default_factory=list)  # layer names kept whole (default: the head)
    recover: RecoverOptions | None = None
    seed: int = 0
    output: Path | None = None
    force: bool = False  # replace an existing output
    labels: list[str] | None = None  # class names for fine-tuning folders (default: the model's)
    preprocess: PreprocessOverrides = dataclasses.field(default_factory=PreprocessOverrides)

    def __post_init__(self) -> None:
        from edgekit import schema

        shared = {key: getattr(self, key) for key in ("amount", "method", "importance", "round_to", "ignore", "seed")}
        for _key, message in schema.problems(PruneSettings, shared):
            raise BadInput(message, fix="e.g. amount 0.3, method structured, importance l2, round_to 8")
        if self.importance == "taylor" and self.recover is None:
            raise BadInput("Taylor importance needs images to compute gradients on", fix="pass --data DIR")

    @classmethod
    def from_settings(cls, settings: PruneSettings, recovery_data: Path | None, **run: Any) -> PruneOptions:
        """The options of a PruneSettings (the typed schema of the CLI and recipes): its recovery fields
        become a RecoverOptions on `recovery_data`; `run` gives output, force, labels and preprocess."""
        recover = None
        if settings.recover:
            if recovery_data is None:
                raise BadInput(f"recovery {settings.recover} needs images", fix="pass --data DIR")
            recover = RecoverOptions(
                settings.recover, recovery_data, settings.epochs, settings.lr, settings.batch_size,
                settings.temperature, settings.patience, settings.flip, settings.data_count,
            )  # fmt: skip
        return cls(
            amount=settings.amount, method=settings.method, importance=settings.importance,
            round_to=settings.round_to, ignore=list(settings.ignore), recover=recover, seed=settings.seed, **run,
        )  # fmt: skip

    def to_dict(self) -> Json:
        """The options as recorded in the sidecar's lineage."""
        recover = dataclasses.asdict(self.recover) if self.recover else None
        if recover:
            recover["data"] = str(recover["data"])
        return {
            "amount": self.amount,
            "method": self.method,
            "importance": self.importance if self.method == "structured" else "l1",
            "round_to": self.round_to if self.method == "structured" else None,
            "ignore": self.ignore,
            "recover": recover,
            "seed": self.seed,
        }


@dataclasses.dataclass
class LayerChange:
    """One prunable layer before and after: output channels, or the share of zero weights."""

    name: str
    kind: str
    channels_before: int
    channels_after: int
    sparsity: float = 0.0


@dataclasses.dataclass
class EpochRecord:
    """One recovery epoch: mean training loss and the held-out agreement (and accuracy with labels)."""

    epoch: int
    loss: float
    agreement: float
    accuracy: float | None = None
    seconds: float = 0.0


MIN_HOLDOUT = 20  # held-out images below which recovery figures are flagged as too thin to trust


@dataclasses.dataclass
class PruneReport:
    """What `edgekit prune` did and measured."""

    source: Path
    output: Path
    options: PruneOptions
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    layers: list[LayerChange]
    zipped_before: int | None = None  # unstructured: deflate-compressed model size
    zipped_after: int | None = None
    agreement_pruned: float | None = None  # held-out top-1 agreement with the original, before recovery
    realigned: str | None = None  # what was done before training: "refit of 35 layers (256 images)", ...
    agreement_realigned: float | None = None  # ... after it (the state epoch 1 starts from)
    agreement_recovered: float | None = None  # ... of the model written (the kept epoch), after recovery
    accuracy_original: float | None = None
    accuracy_pruned: float | None = None
    accuracy_recovered: float | None = None
    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    holdout_images: int = 0
    seconds: float = 0.0
    note: str | None = None

    def summary(self) -> Json:
        """The figures recorded in the sidecar lineage and printed with --json."""
        return {
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "zipped_before": self.zipped_before,
            "zipped_after": self.zipped_after,
            "agreement_pruned": self.agreement_pruned,
            "realigned": self.realigned,
            "agreement_realigned": self.agreement_realigned,
            "agreement_recovered": self.agreement_recovered,
            "accuracy_original": self.accuracy_original,
            "accuracy_pruned": self.accuracy_pruned,
            "accuracy_recovered": self.accuracy_recovered,
            "holdout_images": self.holdout_images,
            "history": [dataclasses.asdict(r) for r in self.history],
        }

    @property
    def warnings(self) -> list[str]:
        """What the user should know about these figures: a held-out set too small to judge them."""
        if self.history and self.holdout_images < MIN_HOLDOUT:
            return [
                f"only {self.holdout_images} held-out images: agreement measured on so few says little "
                f"(one image moves it by {1 / max(self.holdout_images, 1):.0%}); give --data a folder of "
                f"{MIN_HOLDOUT * 5}+ images like the ones the model will see"
            ]
        return []

    def to_dict(self) -> Json:
        """JSON form for --json."""
        return {
            "warnings": self.warnings,
            "source": str(self.source),
            "output": str(self.output),
            "options": self.options.to_dict(),
            **self.summary(),
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "seconds": self.seconds,
            "note": self.note,
        }


def default_output(source: Path, options: PruneOptions) -> Path:
    """MODEL.pruned<percent>.<same suffix>, e.g. net.pruned30.pt2."""
    tag = f"pruned{round(options.amount * 100)}" + ("u" if options.method == "unstructured" else "")
    if source.is_dir():
        return source.with_name(f"{source.name}.{tag}.keras")
    return source.with_name(f"{source.stem}.{tag}{source.suffix}")


def prune_model(
    path: Path, options: PruneOptions, load: LoadOptions | None = None, progress: Callable[[str], None] | None = None
) -> PruneReport:
    """Prune the framework model at `path`, optionally recover it, and write a model of the same kind."""
    from edgekit.artifact import read_artifact

    artifact = read_artifact(path)
    family = artifact.format.family
    if family not in PRUNERS:
        raise BadInput(
            f"{path} is {artifact.format.value}; pruning needs the framework model it was made from",
            fix="prune the PyTorch (.pt2, TorchScript, state dict) or Keras (.keras, .h5) model, then convert it",
        )
    if artifact.format is Format.SAVED_MODEL:
        raise BadInput(
            f"{path} is a TensorFlow SavedModel, which has no editable Keras layers",
            fix="prune the .keras or .h5 file it was exported from",
        )
    options.output = options.output or default_output(path, options)
    if options.output.resolve() == path.resolve():
        raise BadInput(f"output {options.output} would overwrite the source model", fix="choose another -o path")
    refuse_to_replace(options.output, options.force)
    module_name, _, function = PRUNERS[family].partition(":")
    pruner = getattr(importlib.import_module(module_name), function)
    return pruner(artifact, options, load or LoadOptions(), progress or (lambda _message: None))
