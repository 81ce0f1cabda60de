"""The typed settings of `edgekit prune`: the one source of its command-line options, the recipe
step's keys and checks, the JSON schema and README's table (see edgekit.schema)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from edgekit.schema import option

PruneMethod = Literal["structured", "unstructured"]
Importance = Literal["l1", "l2", "taylor"]
RecoveryMode = Literal["distill", "finetune"]

METHODS: tuple[str, ...] = typing.get_args(PruneMethod)
IMPORTANCES: tuple[str, ...] = typing.get_args(Importance)
RECOVERY_MODES: tuple[str, ...] = typing.get_args(RecoveryMode)


@dataclasses.dataclass
class PruneSettings:
    """What to prune, and how the pruned model is trained back."""

    amount: float = option(
        low=0, low_open=True, high=1, high_open=True, help="Share removed, between 0 and 1 (e.g. 0.3)."
    )
    method: PruneMethod = option(
        "structured",
        flag_values={"--structured": "structured", "--unstructured": "unstructured"},
        help="Remove whole channels (smaller and faster), or zero single weights (only compresses better).",
    )
    importance: Importance = option("l2", help="Channel importance: l1/l2 magnitude, or taylor (needs data).")
    round_to: int = option(8, low=1, help="Keep channel counts a multiple of this (16 for VNNI/NEON int8 kernels).")
    ignore: list[str] = option(factory=list, help="Layer names (or prefixes) to leave whole; default: the head.")
    recover: RecoveryMode | None = option(
        None, help="Train the pruned model back: distill (any photos) or finetune (class folders)."
    )
    epochs: int = option(10, low=1, help="Recovery epochs.")
    lr: float | None = option(
        None,
        low=0,
        low_open=True,
        help="Adam learning rate (default 1e-3, or 1e-4 after a Keras refit, which starts recovery near the original).",
    )
    batch_size: int = option(32, low=1, help="Recovery batch size.")
    temperature: float = option(2.0, low=0, low_open=True, help="Distillation temperature.")
    patience: int = option(3, low=1, help="Epochs without gain before recovery stops.")
    data_count: int | None = option(None, low=4, help="Use at most this many recovery images.")
    flip: bool = option(True, help="Augment recovery with random horizontal flips.")
    seed: int = option(0, help="Seed of the recovery split, shuffling and flips.")
