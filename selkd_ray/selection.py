"""Selection that never hurts the student, as pure rules: the race's candidates, its length and winner, and the
guard's decision (the budget's split between the stages is the ledger's: budget.Ledger). No Ray, no I/O.

The scan shortlists teachers; a race of short distillations (Ray Tune, ASHA) among them and a label-only
reference picks one and says, cross-fitted over every validation image, whether it beats labels alone by more
than noise (a paired, McNemar-style standard error, weighed with what past races measured where there are
any); the student it chose is then trained in full on every labelled image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .config import DistillConfig, ScanConfig, at_least
from .errors import SelkdError
from .mixture import MIXTURE_PREFIX, check_per_image
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
    cover: bool = True  # without `mixture`: race the fewest shortlisted teachers that together know every class
    #                     when no single one does (`coverage.covering_members`)

    def __post_init__(self) -> None:
        for flag, value in (("--shortlist", self.shortlist), ("--race-epochs", self.race_epochs),
                            ("--trials-per-gpu", self.trials_per_gpu), ("grace_epochs", self.grace_epochs)):
            at_least(flag, value, 1)
        at_least("reduction_factor", self.reduction_factor, 2)
        at_least("--guard-z", self.guard_z, 0)
        at_least("--mixture-temperature", self.mixture_temperature, 0, strictly=True)
        if self.mixture == 1 or self.mixture < 0:
            raise SelkdError(f"--mixture: expected 0 (no mixture) or a value >= 2, got {self.mixture}")
        check_per_image(self.distill.per_image_weights, max(self.mixture, 2 * self.cover),
                        "give --mixture K (K >= 2), or leave --cover on")
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
    reference, which races beside them. The order is the race's prior (`race_order`): a later candidate
    overtakes an earlier one only by a lead beyond noise, so a mixture of the top K (`--mixture K`) must beat
    its best single teacher to win; a covering mixture leads."""
    mixed = [Candidate(mixture, lam) for lam in lambdas] if mixture else []
    return [Candidate(t, lam) for t in shortlist for lam in lambdas] + mixed + [Candidate(LABELS_ONLY, 0.0)]


def race_order(pool: list[Candidate], covering: bool = False) -> dict[tuple[str, float], int]:
    """Each candidate's place in the race's prior (`race_winner` takes the first within noise of the best):
    the pool's order, except that a mixture the coverage rule chose (`covering`) leads. The rule's evidence is
    that the scan's best teacher lacks classes the mixture knows, so a single teacher must beat the mixture
    beyond noise (chosen on the faculty selection half: where the rule raced it, the mixture's student beat the
    scan's top-1 teacher's in 2 of 2 units, while the race, near chance at 5 labels, picked it in neither)."""
    order = {(c.teacher_id, c.lam): index for index, c in enumerate(pool)}
    if covering:
        order.update({(c.teacher_id, c.lam): -1 for c in pool if c.teacher_id.startswith(MIXTURE_PREFIX)})
    return order


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
    b, c = paired_counts(first, second)
    n = len(first)
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


def validation_folds(task: Task) -> np.ndarray:
    """Two folds of the validation images (0 or 1 for each of `task.indices("val")`, in that order): within each
    class, alternate images in task order, so each fold holds half of every class. The race's verdict against
    labels alone is cross-fitted over them (`cross_fitted`): each fold picks a winner, the other judges it."""
    val = task.indices("val")
    folds = np.zeros(len(val), np.int64)
    for label in range(task.num_classes):
        members = np.flatnonzero(task.labels[val] == label)
        folds[members[1::2]] = 1
    return folds


@dataclass(frozen=True)
class Prior:
    """What past races say of distillation against labels alone, as a normal prior on the accuracy difference
    the guard weighs (`experience_prior`): its mean and spread, how many past tasks it rests on, and where."""

    mean: float
    sd: float
    tasks: int
    source: str

    def describe(self) -> str:
        return (f"prior from {self.tasks} past task(s) of {self.source}: distillation {self.mean:+.3f} +- "
                f"{self.sd:.3f} against labels alone")


PRIOR_MIN_TASKS = 3  # fewer past tasks than this: no prior (the guard weighs this task's evidence alone)
PRIOR_MIN_SD = 0.03  # the prior is never surer than 3 points, however alike the past tasks were


def experience_prior(outcomes: dict[str, list[float]], source: str) -> Prior | None:
    """The empirical-Bayes prior from past races: `outcomes` holds, per past task (this one's own outcomes left
    out by the caller), each raced teacher's validation accuracy less label-only's. Each task gives the mean of
    its raced teachers (the shortlist, not its winner: a prior that leans to caution), the prior is the mean
    and spread of those over tasks, its spread at least PRIOR_MIN_SD. None with fewer than PRIOR_MIN_TASKS."""
    per_task = [float(np.mean(values)) for values in outcomes.values() if values]
    if len(per_task) < PRIOR_MIN_TASKS:
        return None
    sd = max(float(np.std(per_task, ddof=1)), PRIOR_MIN_SD)
    return Prior(float(np.mean(per_task)), sd, len(per_task), source)


@dataclass(frozen=True)
class Evidence:
    """Paired counts of a distilled student against a label-only one on the same validation images: `better` the
    images only the distilled one gets right, `worse` those only label-only gets right, of `images`."""

    better: int
    worse: int
    images: int
    how: str  # which images, and which students, in words

    @property
    def difference(self) -> float:
        return (self.better - self.worse) / self.images

    @property
    def standard_error(self) -> float:
        return math.sqrt(self.better + self.worse) / self.images


def paired_counts(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    return int((first & ~second).sum()), int((~first & second).sum())


def cross_fitted(finished: list[tuple[T, np.ndarray]], reference: T, folds: np.ndarray,
                 z: float) -> tuple[Evidence, list[T]]:
    """The race's evidence against labels alone, with no winner's curse and every validation image used: in
    each fold the race's rule (`race_winner`) picks a winner on that fold's images, and the other fold's images
    judge it against `reference` (the label-only trial, one of `finished`); the two verdicts' paired counts are
    pooled. A fold whose winner is labels alone adds no difference. (evidence, each fold's winner)."""
    labels = next(correct for trial, correct in finished if trial is reference)
    better = worse = 0
    winners = []
    for fold in (0, 1):
        picks, judges = folds == fold, folds != fold
        winner = race_winner([(trial, c[picks]) for trial, c in finished], z)
        winners.append(winner)
        correct = next(c for trial, c in finished if trial is winner)
        b, c = paired_counts(correct[judges], labels[judges])
        better, worse = better + b, worse + c
    return Evidence(better, worse, len(folds), f"the race, cross-fitted over the {len(folds)} validation images' two "
                    "folds (each fold's winner judged on the other's images)"), winners


@dataclass(frozen=True)
class GuardDecision:
    keep_distilled: bool
    message: str
    evidence: Evidence  # the paired counts it decided on
    prior: Prior | None = None
    posterior_mean: float = 0.0
    posterior_sd: float = 0.0

    @property
    def difference(self) -> float:
        """Validation accuracy, distilled minus label-only (the evidence alone)."""
        return self.evidence.difference

    @property
    def standard_error(self) -> float:
        """Of that difference, paired over the validation images."""
        return self.evidence.standard_error


def posterior(evidence: Evidence, prior: Prior | None) -> tuple[float, float]:
    """(mean, sd) of the accuracy difference given the evidence (normal, its paired standard error) and the
    prior (normal; none: flat, so the evidence alone). Evidence with no image that only one student gets right
    (b = c = 0: say both folds' race winners were labels alone) says nothing of the difference's sign; its
    standard error of 0 is no certainty, so the prior stands alone there (chosen on the selection benchmark's
    selection half, 2026-12-07: the guard had ignored the prior in exactly these units and kept label-only
    where distillation helped by 1.5 to 10 points)."""
    d, s = evidence.difference, evidence.standard_error
    if prior is None:
        return d, s
    if evidence.better + evidence.worse == 0:
        return prior.mean, prior.sd
    precision = 1 / prior.sd ** 2 + 1 / s ** 2
    return (prior.mean / prior.sd ** 2 + d / s ** 2) / precision, math.sqrt(1 / precision)


def decide(evidence: Evidence, z: float, teacher: str, prior: Prior | None = None) -> GuardDecision:
    """Keep the distilled student only if the accuracy difference's posterior mean is positive and more than z
    posterior standard deviations: with no prior, a lead of more than z paired standard errors, sqrt(b + c) / n
    (b, c the images only one of the two gets right); a prior from past races (`experience_prior`) pulls a
    verdict on few images toward what distillation usually did. Where no image tells the two apart (b = c = 0:
    a race too short to learn anything, or both folds' winners labels alone) the evidence is silent, and the
    race's winner (the scan's best teacher unless the race said otherwise) stands unless the prior says
    distillation hurts by more than z of its sds: falling back to labels alone there cost 28 points at 5 labels
    per class on the selection benchmark's selection half (2026-12-07), and 1.5 to 10 points in 4 of its 8
    units at 20, and saved nothing in either."""
    if evidence.images == 0:
        raise SelkdError("guard: expected both students' results on the same, non-empty validation split")
    mean, sd = posterior(evidence, prior)
    d, s = evidence.difference, evidence.standard_error
    counts = (f"{evidence.better} image(s) only the distilled student gets right, {evidence.worse} only "
              f"label-only, of {evidence.images}: {d:+.3f} +- {s:.3f}")
    weighed = f"; with the {prior.describe()}: {mean:+.3f} +- {sd:.3f}" if prior else ""
    if evidence.better + evidence.worse == 0:  # nothing tells the two apart: the race's winner stands, unless
        keep = not (mean < 0 and -mean > z * sd)  # the prior says distillation hurts beyond noise
        rule = (f"no image tells them apart: the race's winner stands"
                + (f" (prior {mean:+.3f} {'>=' if keep else '<'} -{z:g} x {sd:.3f})" if prior else ""))
    else:
        keep = mean > z * sd and mean > 0
        rule = f"{mean:+.3f} {'>' if keep else '<='} {z:g} x {sd:.3f}"
    verdict = (f"kept the student distilled from {teacher}" if keep else
               f"kept the LABEL-ONLY student: distillation from {teacher} was not better within noise")
    return GuardDecision(keep, f"{verdict} ({evidence.how}; {counts}{weighed}; {rule})", evidence, prior, mean, sd)


def guard(distilled_correct: np.ndarray, labels_correct: np.ndarray, z: float, teacher: str,
          prior: Prior | None = None, how: str = "") -> GuardDecision:
    """The guard on two students' results on the same validation images (`decide` on their paired counts)."""
    distilled_correct, labels_correct = np.asarray(distilled_correct, bool), np.asarray(labels_correct, bool)
    n = len(distilled_correct)
    if n == 0 or len(labels_correct) != n:
        raise SelkdError("guard: expected both students' results on the same, non-empty validation split")
    b, c = paired_counts(distilled_correct, labels_correct)
    return decide(Evidence(b, c, n, how or f"both final students on the {n} validation images"), z, teacher, prior)
