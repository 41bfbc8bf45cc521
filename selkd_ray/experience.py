"""Experience: what each selection learned about its teachers, as rows a ranking can learn from.

A selection's race trains the shortlisted teachers' students beside a label-only one on the same images; the gap
in validation accuracy is the teacher's measured value for that task. Beside it go what was known before any
training: the task's size, the teacher's static facts and every scorer's value, normalised within the task
(ranks scaled to [0, 1]) so that tasks with different score scales can be compared. Pure: no Ray, no pyarrow.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from .records import Task, TeacherSpec
from .rows import ExperienceRow, ScoreRow, TrialRow
from .errors import SelkdError
from .scoring.rankers import Candidate, TaskEvidence, feature_names, fit_weights, ranks, score_task
from .selection import LABELS_ONLY


def within_task_ranks(values: list[float]) -> list[float]:
    """Each value's rank among the finite ones, scaled to [0, 1] (1 the highest; ties share their mean rank; a
    single finite value is 1); NaN (or None) stays NaN. The same ranks the task scorers read (`rankers.ranks`)."""
    return [float(v) for v in ranks([math.nan if v is None else v for v in values])]


def label_overlap(teacher: tuple[str, ...], target: tuple[str, ...]) -> float:
    """The share of the target's label names that the teacher also names (case and spaces aside)."""
    norm = lambda name: " ".join(name.lower().replace("_", " ").replace("-", " ").split())  # noqa: E731
    known = {norm(name) for name in teacher}
    return sum(norm(name) in known for name in target) / max(len(target), 1)


def race_outcomes(task: Task, ranked: list[ScoreRow], specs: dict[str, TeacherSpec], trials: list[TrialRow],
                  when: datetime | None = None) -> list[ExperienceRow]:
    """One row per raced teacher: its best trial against the label-only trial. [] when the label-only trial
    did not finish (there is nothing to measure against)."""
    reference = next((t for t in trials if t.candidate == LABELS_ONLY and not t.status.startswith("failed")), None)
    if reference is None:
        return []
    scorers = sorted({name for row in ranked for name in row.scores})
    ranks = {name: dict(zip((row.teacher_id for row in ranked),
                            within_task_ranks([row.score_of(name) for row in ranked]))) for name in scorers}
    rows = {row.teacher_id: row for row in ranked}
    stamp = (when or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    best: dict[str, TrialRow] = {}
    for trial in trials:
        if trial.candidate != LABELS_ONLY and not trial.status.startswith("failed") and trial.candidate in rows:
            if trial.candidate not in best or trial.val_accuracy > best[trial.candidate].val_accuracy:
                best[trial.candidate] = trial
    out = []
    for teacher_id, trial in best.items():
        spec, row = specs[teacher_id], rows[teacher_id]
        out.append(ExperienceRow(
            task.content_hash, task.name, len(task.indices("train")), task.num_classes, teacher_id,
            spec.content_hash, spec.architecture, spec.param_count, spec.flops_per_sample, spec.num_classes,
            label_overlap(spec.label_names, task.label_names), len(ranked), row.probe_size,
            {name: ranks[name][teacher_id] for name in scorers}, trial.val_accuracy - reference.val_accuracy,
            trial.val_accuracy, reference.val_accuracy, trial.lam, trial.epochs, reference.epochs,
            len(task.indices("val")), "race", stamp))
    return out


def summary(rows: list[ExperienceRow]) -> dict:
    """What an experience table holds: its tasks, outcomes and teachers, and how well each scorer's within-task
    rank has agreed with the measured outcomes so far (Kendall's tau per task with two or more outcomes, the
    mean over those tasks; a scorer that does not vary within a task says nothing there)."""
    from scipy.stats import kendalltau

    by_task: dict[str, list[ExperienceRow]] = {}
    for row in rows:
        by_task.setdefault(row.task_hash, []).append(row)
    scorers = sorted({name for row in rows for name in row.scores})
    agreement = {}
    for name in scorers:
        taus = []
        for task_rows in by_task.values():
            pairs = [(r.scores.get(name, math.nan), r.outcome) for r in task_rows]
            pairs = [(s, o) for s, o in pairs if s is not None and math.isfinite(s)]
            if len(pairs) >= 2 and len({s for s, _ in pairs}) > 1 and len({o for _, o in pairs}) > 1:
                taus.append(float(kendalltau(*zip(*pairs)).statistic))
        agreement[name] = {"tau": float(np.mean(taus)) if taus else math.nan, "tasks": len(taus)}
    return {"tasks": len(by_task), "outcomes": len(rows), "teachers": len({r.teacher_hash for r in rows}),
            "mean_outcome": float(np.mean([r.outcome for r in rows])) if rows else math.nan,
            "helped": sum(r.outcome > 0 for r in rows), "agreement": agreement}


def as_candidate(row: ExperienceRow) -> Candidate:
    """An outcome as the learned ranker reads it: the scorers' within-task ranks, static facts, the outcome."""
    return Candidate(row.teacher_id, dict(row.scores), float(row.params), float(row.flops_per_sample),
                     row.teacher_classes, row.label_overlap, row.outcome)


def history_of(rows: list[ExperienceRow]) -> dict[str, tuple[Candidate, ...]]:
    """Outcomes grouped by task (its content hash); a teacher measured twice on one task (two selections)
    counts once, at its latest outcome."""
    latest: dict[tuple[str, str], ExperienceRow] = {}
    for row in sorted(rows, key=lambda r: r.recorded_at):
        latest[(row.task_hash, row.teacher_hash)] = row
    grouped: dict[str, list[Candidate]] = {}
    for (task_hash, _), row in sorted(latest.items()):
        grouped.setdefault(task_hash, []).append(as_candidate(row))
    return {task: tuple(candidates) for task, candidates in grouped.items()}


def leave_one_task_out(history: dict[str, tuple[Candidate, ...]]) -> dict[str, dict]:
    """How well `learned` (fitted on every other task) and `aggregate` ranked each task whose outcomes differ,
    as the mean weighted Kendall tau over those tasks (the tau a ranking benchmark reports)."""
    from scipy.stats import weightedtau

    taus: dict[str, list[float]] = {"learned": [], "aggregate": []}
    for task, candidates in history.items():
        outcomes = np.array([c.outcome for c in candidates])
        if len(candidates) < 2 or np.ptp(outcomes) == 0:
            continue
        for name in taus:
            values = np.array(score_task([name], TaskEvidence(task, candidates, history))[0][name])
            tied = not np.isfinite(values).all() or np.ptp(values) == 0
            taus[name].append(0.0 if tied else float(weightedtau(values, outcomes).statistic))
    return {name: {"tau": float(np.mean(v)) if v else math.nan, "tasks": len(v)} for name, v in taus.items()}


def fit_report(rows: list[ExperienceRow]) -> dict:
    """What `selkd experience fit` says: the weights a fit on every task gives (or why none), and the
    leave-one-task-out agreement of `learned` and the cold-start aggregate with the measured outcomes."""
    history = history_of(rows)
    try:
        weights, refused = dict(zip(feature_names(), fit_weights(history).tolist())), ""
    except SelkdError as err:
        weights, refused = {}, str(err)
    return {"tasks": len(history), "outcomes": sum(len(c) for c in history.values()), "weights": weights,
            "refused": refused, "leave_one_task_out": leave_one_task_out(history)}
