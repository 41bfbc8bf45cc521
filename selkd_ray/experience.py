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
from .selection import LABELS_ONLY


def within_task_ranks(values: list[float]) -> list[float]:
    """Each value's rank among the finite ones, scaled to [0, 1] (1 the highest; ties share their mean rank; a
    single finite value is 1); NaN stays NaN."""
    from scipy.stats import rankdata

    finite = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    ranks = [math.nan] * len(values)
    if finite:
        average = rankdata([values[i] for i in finite], method="average")  # 1..n, ties at their mean
        for i, rank in zip(finite, average):
            ranks[i] = 1.0 if len(finite) == 1 else float((rank - 1) / (len(finite) - 1))
    return ranks


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
