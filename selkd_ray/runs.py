"""What a student's training run hands its plan (`TrainedRun`), and why it stopped (`StopReason`): the records
between the student loop, Ray Train and the jobs that plan distillations."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class StopReason(str, Enum):
    """Why a student's training ended before its last epoch; a budget stop is lifted by a larger budget, an
    early stop never is."""

    NONE = ""  # every epoch ran
    EARLY_STOP = "early stop"
    FLOPS_BUDGET = "FLOPs budget"
    TIME_BUDGET = "time budget"

    @property
    def lifted_by_a_larger_budget(self) -> bool:
        return self in (StopReason.FLOPS_BUDGET, StopReason.TIME_BUDGET)

    @classmethod
    def of(cls, saved: dict) -> "StopReason":
        """The reason a saved training state records (a checkpoint from before the enum: read from its text)."""
        if saved.get("stop") is not None:
            return cls(saved["stop"])
        text = saved.get("stopped", "")
        return next((reason for reason in cls if reason.value and text.startswith(reason.value)), cls.NONE)


@dataclass(frozen=True)
class TrainedRun:
    """What a student's training hands back to its plan, read from the run's last checkpoint (or the plain
    loop's end): the best-validation weights, the per-epoch history and why it stopped."""

    model: dict  # the best-validation weights, on the host
    history: tuple[dict, ...]  # one row per epoch: epoch, loss, val_accuracy, flops (cumulative), seconds
    best_epoch: int
    best_val: float
    flops: int  # training FLOPs spent over every worker
    stop: StopReason
    stopped: str  # the stop in words ('' when every epoch ran)
    checkpoint_path: str = ""
