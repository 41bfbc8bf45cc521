"""Selection that never hurts the student, as pure rules: the race's candidates, its length and winner, and the
guard's decision (the budget's split between the stages is the ledger's: budget.Ledger). No Ray, no I/O.

The scan shortlists teachers; a race of short distillations (Ray Tune, ASHA) among them and a label-only
reference picks one; the winner is distilled in full and kept only if it beats a full label-only student on
the validation split by more than noise (a paired, McNemar-style standard error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from .config import DistillConfig, ScanConfig, at_least
from .errors import SelkdError
from .mixture import check_per_image
from .records import Task

LABELS_ONLY = "labels-only"
T = TypeVar("T")


@dataclass(frozen=True)
class SelectConfig:
    scan: ScanConfig = ScanConfig()
    distill: DistillConfig = DistillConfig()
    budget: str | None = None  # the whole pipeline's: scan + race + final distillation (FLOPs or seconds)
    shortlist: int = 3  # top-k teachers of the scan that enter the race
    pinned: tuple[str, ...] = ()  # teacher ids put at the top of the shortlist whatever their score
    race_epochs: int = 6  # most epochs a race trial runs (ASHA stops the weak ones earlier)
    lambdas: tuple[float, ...] = (1.0,)  # OT-term weights raced per teacher (lambda chosen on validation)
    grace_epochs: int = 2  # ASHA: epochs every trial runs before it may be stopped
    reduction_factor: int = 3  # ASHA: keep the best 1/reduction_factor at each rung
    race: bool = True  # False: the top teacher goes straight to distillation
    scan_share: float = 0.2  # at most this share of the budget for the scan
    guard_z: float = 0.5  # noise margin (standard errors): for the guard, and for overtaking in the race
    trials_per_gpu: int = 4  # race trials sharing one GPU where the cluster has GPUs (each takes 1/this)
    mixture: int = 0  # K >= 2: the race also holds the shortlist's top K as one mixture of teachers (0: none)
    mixture_temperature: float = 1.0  # of the softmax that weighs the mixture's teachers by their scan scores

    def __post_init__(self) -> None:
        for flag, value in (("--shortlist", self.shortlist), ("--race-epochs", self.race_epochs),
                            ("--trials-per-gpu", self.trials_per_gpu), ("grace_epochs", self.grace_epochs)):
            at_least(flag, value, 1)
        at_least("reduction_factor", self.reduction_factor, 2)
        at_least("--guard-z", self.guard_z, 0)
        at_least("--mixture-temperature", self.mixture_temperature, 0, strictly=True)
        if self.mixture == 1 or self.mixture < 0:
            raise SelkdError(f"--mixture: expected 0 (no mixture) or a value >= 2, got {self.mixture}")
        check_per_image(self.distill.per_image_weights, self.mixture, "give --mixture K (K >= 2)")
        if self.mixture > self.shortlist:
            raise SelkdError(f"--mixture: {self.mixture} teachers, but the shortlist holds {self.shortlist} "
                             "(raise --shortlist)")
        if not self.lambdas or not all(math.isfinite(lam) and lam >= 0 for lam in self.lambdas):
            raise SelkdError(f"--lambda-grid: expected non-negative numbers, got {self.lambdas}")


@dataclass(frozen=True)
class Candidate:
    """One race trial: a teacher (or labels only) and the OT-term weight."""

    teacher_id: str
    lam: float

    @property
    def name(self) -> str:
        return LABELS_ONLY if self.teacher_id == LABELS_ONLY else f"{self.teacher_id} (lambda {self.lam:g})"


def candidates(shortlist: list[str], lambdas: tuple[float, ...], mixture: str = "") -> list[Candidate]:
    """Every (teacher, lambda) pair, then the mixture's (its name, `mixture.mixture_name`), then the label-only
    reference, which races beside them. The order is the race's prior: a later candidate overtakes an earlier
    one only by a lead beyond noise, so a mixture must beat its best single teacher to win."""
    mixed = [Candidate(mixture, lam) for lam in lambdas] if mixture else []
    return [Candidate(t, lam) for t in shortlist for lam in lambdas] + mixed + [Candidate(LABELS_ONLY, 0.0)]


def shortlist(ranked_ids: list[str], k: int, pinned: tuple[str, ...] = ()) -> list[str]:
    """The pinned teachers first (in the order given), then the scan's best, k in all (at least the pins)."""
    missing = [t for t in pinned if t not in ranked_ids]
    if missing:
        raise SelkdError(f"--teacher: {', '.join(missing)} not among the scan's ranked teachers")
    rest = [t for t in ranked_ids if t not in pinned]
    return list(pinned) + rest[:max(0, k - len(pinned))]


def race_epochs(allowance: float | None, trial_epoch_costs: list[float], config: SelectConfig) -> int:
    """Epochs per trial such that every trial running to the end still fits the allowance (ASHA only ever
    spends less). 0 means no race: not even one epoch for every candidate."""
    if allowance is None:
        return config.race_epochs
    per_epoch = sum(trial_epoch_costs)
    return int(min(config.race_epochs, math.floor(allowance / per_epoch))) if per_epoch > 0 else config.race_epochs


def paired_error(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """(accuracy of `first` less that of `second`, its standard error paired over the same images:
    sqrt(b + c) / n, b and c the images only one of the two gets right)."""
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    n = len(first)
    b, c = int((first & ~second).sum()), int((~first & second).sum())
    return (b - c) / n, math.sqrt(b + c) / n


def race_winner(finished: list[tuple[T, np.ndarray]], z: float) -> T:
    """The race's winner among the trials that ran longest, given as (trial, which validation images its best
    epoch gets right) in the scan's order (shortlist order, label-only last): the first whose accuracy is
    within z paired standard errors of the best one's. A better-ranked teacher is overtaken only by a lead
    beyond noise, paired over the same images as the guard's (`paired_error`)."""
    if not finished or any(len(correct) == 0 or len(correct) != len(finished[0][1]) for _, correct in finished):
        raise SelkdError("race: expected finished trials with results on the same, non-empty validation images")
    best = max((correct for _, correct in finished), key=lambda correct: np.mean(correct))

    def within_noise(correct: np.ndarray) -> bool:
        lead, error = paired_error(best, correct)
        return lead <= z * error

    return next(trial for trial, correct in finished if within_noise(correct))  # the best one always is


GUARD_SPLIT = "guard"  # the validation images only the guard reads (`split_validation`)


def split_validation(task: Task) -> tuple[Task, str]:
    """(the task with half of each class's validation images moved to a GUARD_SPLIT, a note when it cannot be).

    A selection asks its validation images three questions: which epoch each student keeps, which race trial
    wins, and whether the distilled student beat label-only. Asked of the same images, the third answer is
    biased toward distillation: the race kept the trial that did best on exactly those images (a winner's
    curse the label-only reference does not get). So the race and every student's best epoch read one half
    ("val"), the guard the other ("guard"), which chose nothing and so measures both final students without
    bias. Stratified and deterministic: within each class, alternate validation images (in task order) go to
    each half. A class with fewer than two validation images cannot give both halves one: then nothing is
    split and the note says the guard shares the images (and their bias)."""
    val = task.indices("val")
    counts = np.bincount(task.labels[val], minlength=task.num_classes)
    if len(val) == 0 or counts.min() < 2:
        return task, (f"validation split: {int(counts.min()) if len(val) else 0} image(s) in its smallest class, too "
                      "few to give the guard images of its own; the guard reads the images that chose the race's "
                      "winner and the students' epochs (biased toward distillation)")
    splits = np.asarray(task.splits).astype(str).astype("U16")
    for label in range(task.num_classes):
        rows = val[task.labels[val] == label]
        splits[rows[1::2]] = GUARD_SPLIT
    return replace(task, splits=splits), ""


@dataclass(frozen=True)
class GuardDecision:
    keep_distilled: bool
    difference: float  # validation accuracy, distilled minus label-only
    standard_error: float  # of that difference, paired over the validation images
    message: str


def guard(distilled_correct: np.ndarray, labels_correct: np.ndarray, z: float, teacher: str) -> GuardDecision:
    """Keep the distilled student only if it beats the label-only one on the validation split by more than
    z paired standard errors: sqrt(b + c) / n, with b and c the images only one of the two gets right."""
    distilled_correct, labels_correct = np.asarray(distilled_correct, bool), np.asarray(labels_correct, bool)
    n = len(distilled_correct)
    if n == 0 or len(labels_correct) != n:
        raise SelkdError("guard: expected both students' results on the same, non-empty validation split")
    difference, error = paired_error(distilled_correct, labels_correct)
    accuracies = (f"accuracy on the guard's {n} validation images {distilled_correct.mean():.3f} vs "
                  f"{labels_correct.mean():.3f} label-only")
    if difference > z * error and difference > 0:
        return GuardDecision(True, difference, error, f"kept the student distilled from {teacher}: {accuracies}, "
                             f"{difference:+.3f} > {z:g} x {error:.3f} (noise)")
    return GuardDecision(False, difference, error, f"kept the LABEL-ONLY student: distillation from {teacher} was "
                         f"not better within noise ({accuracies}, {difference:+.3f} <= {z:g} x {error:.3f})")
