"""Scorers of a whole task: they rank every teacher of a scan at once from the teachers' own scores.

No single score ranks well across zoos (README, ranking benchmark), so two scorers combine them:
- `aggregate`, the cold start: the mean within-task rank of the scorers that ranked best on the benchmark's
  selection half of targets (AGGREGATE_INPUTS); parameter-free.
- `learned`: a pairwise ranker fitted on experience (the outcomes of earlier selections, `experience.py`):
  within every past task, each pair of teachers whose outcomes differ gives the difference of their features
  and which one won; a logistic regression without intercept on those differences gives one weight per
  feature, and a teacher's score is its features times the weights. Features are within-task ranks, so tasks
  with different score scales and zoo sizes compare. Each task's pairs carry equal total weight (a task is the
  independent unit), each pair its outcome gap. The task being ranked never enters its own fit; with fewer
  than MIN_TASKS other tasks the fit is refused and `learned` ranks as `aggregate`, saying so.
Pure: numpy, scipy, scikit-learn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import SelkdError
from .registry import SCORERS, TASK

AGGREGATE_INPUTS = ("nce", "leep", "gbc", "ot", "knn")  # best mean weighted tau on the selection half
LEARNED_INPUTS = ("nce", "leep", "ot", "gbc", "knn", "lead", "logme", "hscore")
STATIC_FEATURES = ("params", "flops", "teacher_classes", "label_overlap")
MIN_TASKS = 3  # tasks with at least one decided pair before a fit is trusted
MIN_GAP = 0.005  # outcomes closer than this (half a point of accuracy) decide no pair
REGULARISATION = 1.0  # scikit-learn's C: the inverse strength of the L2 penalty


@dataclass(frozen=True)
class Candidate:
    """One teacher of one task, as a ranking across teachers sees it (raw scores or within-task ranks: the
    features rank them again, which leaves ranks unchanged)."""

    teacher_id: str
    scores: dict[str, float]
    params: float = 0.0
    flops: float = 0.0
    teacher_classes: int = 0
    label_overlap: float = 0.0
    outcome: float = math.nan  # measured gain over label-only (experience only)


@dataclass(frozen=True)
class TaskEvidence:
    """What a task's scorer reads: this task's candidates and, for `learned`, past tasks' candidates with
    outcomes (by task hash; the caller's own task is dropped by the ranker, not trusted to the caller)."""

    task_hash: str
    candidates: tuple[Candidate, ...]
    history: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    history_problem: str = ""  # why no history could be read ('' when none was asked for or all is well)


@dataclass(frozen=True)
class TaskScores:
    values: tuple[float, ...]  # one per candidate, in order
    note: str = ""  # a line for the user: a fallback, a refused fit


def ranks(values: list[float]) -> np.ndarray:
    """Within-task ranks scaled to [0, 1] (1 the highest, ties at their mean); NaN stays NaN."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=float)
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    if finite.sum() == 1:
        out[finite] = 1.0
    elif finite.any():
        out[finite] = (rankdata(values[finite]) - 1) / (finite.sum() - 1)
    return out


def feature_names(inputs: tuple[str, ...] = LEARNED_INPUTS) -> tuple[str, ...]:
    return (*inputs, *STATIC_FEATURES)


def features(candidates: tuple[Candidate, ...], inputs: tuple[str, ...] = LEARNED_INPUTS) -> np.ndarray:
    """(teachers, features): each input scorer's and static fact's within-task rank, the label overlap as it
    is; a missing value sits at the middle rank (0.5), so it neither helps nor hurts."""
    columns = [ranks([c.scores.get(name, math.nan) for c in candidates]) for name in inputs]
    columns += [ranks([getattr(c, name) for c in candidates]) for name in STATIC_FEATURES[:-1]]
    columns.append(np.array([c.label_overlap for c in candidates], dtype=float))
    matrix = np.stack(columns, axis=1) if candidates else np.zeros((0, len(inputs) + len(STATIC_FEATURES)))
    return np.where(np.isfinite(matrix), matrix, 0.5)


def aggregate_values(candidates: tuple[Candidate, ...]) -> np.ndarray:
    """The mean within-task rank over AGGREGATE_INPUTS (the inputs a teacher has); NaN where it has none."""
    matrix = np.stack([ranks([c.scores.get(name, math.nan) for c in candidates]) for name in AGGREGATE_INPUTS])
    present = np.isfinite(matrix).sum(0)
    total = np.where(np.isfinite(matrix), matrix, 0.0).sum(0)
    return np.where(present > 0, total / np.maximum(present, 1), np.nan)


def pairs(history: dict[str, tuple[Candidate, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Feature differences, winners and weights of every decided pair (both orders), and the tasks giving any."""
    rows, wins, weights, tasks = [], [], [], 0
    for candidates in history.values():
        matrix, outcomes = features(candidates), np.array([c.outcome for c in candidates], dtype=float)
        decided = [(i, j) for i in range(len(candidates)) for j in range(i + 1, len(candidates))
                   if np.isfinite(outcomes[i]) and np.isfinite(outcomes[j])
                   and abs(outcomes[i] - outcomes[j]) >= MIN_GAP]
        if not decided:
            continue
        tasks += 1
        gaps = np.array([abs(outcomes[i] - outcomes[j]) for i, j in decided])
        share = gaps / gaps.sum()  # each task's pairs weigh 1 in all
        for (i, j), weight in zip(decided, share):
            difference, won = matrix[i] - matrix[j], outcomes[i] > outcomes[j]
            rows += [difference, -difference]
            wins += [won, not won]
            weights += [weight, weight]
    width = len(feature_names())
    return (np.array(rows).reshape(-1, width), np.array(wins, dtype=bool), np.array(weights), tasks)


def fit_weights(history: dict[str, tuple[Candidate, ...]]) -> np.ndarray:
    """The learned ranker's weights, one per feature (`feature_names()`); too little experience is one line."""
    from sklearn.linear_model import LogisticRegression

    differences, wins, weights, tasks = pairs(history)
    if tasks < MIN_TASKS:
        raise SelkdError(f"learned: {tasks} task(s) of experience with teachers whose outcomes differ; a fit "
                         f"needs at least {MIN_TASKS}")
    model = LogisticRegression(C=REGULARISATION, fit_intercept=False, max_iter=1000)
    model.fit(differences, wins, sample_weight=weights)
    return model.coef_[0].copy()


def without(history: dict[str, tuple[Candidate, ...]], task_hash: str) -> dict[str, tuple[Candidate, ...]]:
    """The history with one task's outcomes left out: the task being ranked never ranks itself."""
    return {task: candidates for task, candidates in history.items() if task != task_hash}


@SCORERS.register("aggregate", TASK)
def aggregate_scorer(evidence: TaskEvidence) -> TaskScores:
    """The cold start: mean within-task rank of NCE, LEEP, GBC, `ot` and kNN."""
    return TaskScores(tuple(aggregate_values(evidence.candidates).tolist()))


@SCORERS.register("learned", TASK)
def learned_scorer(evidence: TaskEvidence) -> TaskScores:
    """The pairwise ranker fitted on the experience of every other task; the aggregate, said, without one."""
    if evidence.history_problem:
        fallback = f"learned: {evidence.history_problem}; ranked by the cold-start aggregate"
        return TaskScores(aggregate_scorer(evidence).values, fallback)
    try:
        weights = fit_weights(without(evidence.history, evidence.task_hash))
    except SelkdError as err:
        return TaskScores(aggregate_scorer(evidence).values, f"{err}; ranked by the cold-start aggregate")
    return TaskScores(tuple((features(evidence.candidates) @ weights).tolist()))


def task_scorers(names: list[str] | tuple[str, ...]) -> list[str]:
    return [name for name in names if name in SCORERS.tagged(TASK)]


def inputs_of(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The teachers' scorers the requested task scorers read, beyond those requested."""
    wanted: list[str] = []
    for name in task_scorers(names):
        for needed in (AGGREGATE_INPUTS if name == "aggregate" else LEARNED_INPUTS):
            if needed not in names and needed not in wanted:
                wanted.append(needed)
    return tuple(wanted)


def score_task(names: list[str] | tuple[str, ...], evidence: TaskEvidence) -> tuple[dict[str, tuple[float, ...]], list[str]]:
    """Every requested task scorer's values for the candidates, and the lines they have for the user."""
    values, notes = {}, []
    for name in task_scorers(names):
        result = SCORERS.get(name)(evidence)
        values[name] = result.values
        if result.note:
            notes.append(result.note)
    return values, notes
