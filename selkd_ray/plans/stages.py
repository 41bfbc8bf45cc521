"""The stages of a selection after its scan: the teachers' outputs on the student's images, the race (Ray Tune,
ASHA) and the final stage (Ray Train, side by side) with its guard. Each stage asks the selection's one ledger
what it may spend and charges what it did."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from ..budget import Ledger
from ..errors import SelkdError
from ..io.cache import PredictionCache, prediction_key
from ..progress import Progress
from ..records import ProbeSet, Task, TeacherSpec, content_hash
from ..rows import StageRow, TrialRow
from ..mixture import describe, members_of, mixture_name, score_weights
from ..selection import LABELS_ONLY, Candidate, SelectConfig, candidates, guard, race_epochs, race_winner
from ..training.data import StudentData
from ..training.student_data import (local_teacher_probs, mixed, needs_teacher_outputs, run_name, student_data,
                                     student_images, teacher_spec)
from .distill import DistillResult, plan_distillation, train_side_by_side
from .inputs import cost_from_scan
from .scan import ScanResult
from .teacher_outputs import cached_teacher_probs


@dataclass(frozen=True)
class EpochCosts:
    """FLOPs of one epoch (validation included) of a distilled and of a label-only student, and of one
    student's test pass and guard pass (over the validation split)."""

    distilled: int
    labels: int
    test: int
    guard: int

    @property
    def both(self) -> int:
        return self.distilled + self.labels

    def evaluation(self, students: int) -> int:
        """Evaluating the final stage's students: each one's test pass, and the guard's passes when it pairs two."""
        return students * (self.test + (self.guard if students > 1 else 0))


@dataclass
class Selection:
    """What the stages of one selection share: inputs, the ledger, the scan's results, and the stage rows as
    each stage charges its own."""

    task: Task
    out_dir: Path
    config: SelectConfig
    ledger: Ledger
    scanned: ScanResult
    progress: Progress
    costs: EpochCosts
    stages: list[StageRow] = field(default_factory=list)
    teachers: dict[str, tuple[TeacherSpec, np.ndarray | None]] = field(default_factory=dict)
    mixture: tuple[str, ...] = ()  # the race's mixture of teachers (`--mixture K`: the shortlist's top K)
    mixture_weights: tuple[float, ...] = ()

    def plan_mixture(self, short: list[str]) -> None:
        """The shortlist's top K as one candidate, weighed by their scan scores (`mixture.score_weights`)."""
        if self.config.mixture < 2:
            return
        ranked = self.scanned.ranked
        score = {row.teacher_id: row.score for row in ranked}
        self.mixture = tuple(short[:self.config.mixture])
        self.mixture_weights = score_weights([score[t] for t in self.mixture], [row.score for row in ranked],
                                             self.config.mixture_temperature)
        self.progress(f"mixture: {describe(self.mixture, self.mixture_weights)} races as one candidate")

    @property
    def paths(self) -> dict[str, str]:
        """Teacher id -> folder, for every ranked teacher."""
        return {row.teacher_id: row.path for row in self.scanned.ranked}

    @cached_property
    def cache(self) -> PredictionCache:
        return PredictionCache(self.out_dir / "cache")

    @cached_property
    def student_images(self) -> ProbeSet:
        return student_images(self.task)

    def charge(self, row: StageRow, paid: bool = False) -> None:
        """Record a stage's row and charge the ledger its FLOPs (`paid`: its own ledger charged as it went)."""
        self.stages.append(row)
        self.ledger.charge(row.candidate, 0.0 if paid else row.flops, row.seconds)

    def teacher(self, teacher_id: str) -> tuple[TeacherSpec, np.ndarray | None]:
        """(the teacher's spec, its cost matrix from the scan)."""
        if teacher_id not in self.teachers:
            self.teachers[teacher_id] = (teacher_spec(self.paths[teacher_id]),
                                         cost_from_scan(self.scanned.scores_path, teacher_id, self.task.num_classes))
        return self.teachers[teacher_id]

    def outputs_flops(self, teacher_ids: list[str]) -> float:
        """FLOPs of the forward passes that give these teachers' outputs on the student images: charged once,
        when first computed, so outputs already in the cache are free."""
        images, total = self.student_images, 0.0
        for teacher_id in teacher_ids:
            spec, cost = self.teacher(teacher_id)
            cached = prediction_key(spec, images) in self.cache
            if needs_teacher_outputs(spec, self.config.distill, cost) and not cached:
                total += spec.flops_per_sample * len(images)
        return total

    def teacher_data(self, teacher_ids: list[str]) -> dict[str, StudentData]:
        """Each teacher's student data, computing (on Ray Data) the outputs not cached yet; what those forward
        passes cost is charged as its own stage."""
        started, flops, data = time.perf_counter(), self.outputs_flops(teacher_ids), {}
        outputs = lambda spec, images: cached_teacher_probs(spec, images, self.cache)  # noqa: E731
        for teacher_id in teacher_ids:
            spec, cost = self.teacher(teacher_id)
            data[teacher_id] = student_data(self.task, spec, self.config.distill, cost, outputs)
        self.charge(StageRow("teacher outputs", flops, time.perf_counter() - started))
        return data


def race(run: Selection, short: list[str]) -> tuple[Candidate, list[TrialRow], str]:
    """(the winning candidate, the trial rows, a note when there was no race). Whatever happens, the winner's
    outputs on the student images are computed (and charged) here, before the final stage's share is fixed."""
    pool = candidates(short, run.config.lambdas, mixture_name(run.mixture) if run.mixture else "")
    epochs, note = race_length(run, short, pool)
    if note:
        run.teacher_data([short[0]])
        return Candidate(short[0], run.config.distill.lam), [], note
    data = {LABELS_ONLY: student_data(run.task, None, run.config.distill, None), **run.teacher_data(short)}
    if run.mixture:  # the members' outputs are the shortlist's, computed and charged once
        data[mixture_name(run.mixture)] = mixed([data[t] for t in run.mixture], run.mixture_weights)
    seconds = None
    if run.ledger.share("race") is not None:  # the outputs' wall time comes out of the race's share
        seconds = run.ledger.share("race") - run.stages[-1].seconds  # the "teacher outputs" row just charged
        if seconds <= 0:
            return Candidate(short[0], run.config.distill.lam), [], (
                "no time left for a race after the shortlist's outputs on the student images: the scan's top "
                f"teacher {short[0]} goes straight to distillation")
    rows, best = run_trials(run, short, pool, data, epochs, seconds)
    return Candidate(best.candidate, best.lam), rows, ""


def race_length(run: Selection, short: list[str], pool: list[Candidate]) -> tuple[int, str]:
    """Epochs per trial such that every trial running to the end fits what the ledger allows the race once the
    shortlist's outputs are paid; a note instead when there is no race."""
    config = run.config
    if not config.race:
        return 0, f"no race (--no-race): the scan's top teacher {short[0]} goes straight to distillation"
    costs = [run.costs.labels if c.teacher_id == LABELS_ONLY else run.costs.distilled for c in pool]
    allowance = run.ledger.race_allowance()
    if allowance is not None:
        allowance = max(0.0, allowance - run.outputs_flops(short))
    epochs = race_epochs(allowance, costs, config)
    if epochs >= 1:
        return epochs, ""
    return 0, (f"no budget left for a race ({allowance or 0:.3g} FLOPs for {len(pool)} candidates once the "
               f"shortlist's outputs on the student images are paid): the scan's top teacher {short[0]} goes "
               "straight to distillation")


def run_trials(run: Selection, short: list[str], pool: list[Candidate], data: dict[str, StudentData], epochs: int,
               seconds: float | None):
    """The race on Ray Tune: (the trial rows, the winning trial), the race charged as one stage."""
    from ..distributed.race import run_race

    config, name = run.config, race_name(run, short)
    if (run.out_dir / "race" / name).is_dir():
        run.progress(f"race: {name} ran before; its finished trials stand and unfinished ones run again")
    else:
        run.progress(f"race: {len(pool)} candidates ({', '.join(c.name for c in pool)}), up to {epochs} epochs "
                     f"each, ASHA (grace {config.grace_epochs}, reduction {config.reduction_factor})")
    started = time.perf_counter()
    trials = [{"candidate": c.teacher_id, "lam": c.lam, "loss": "ce" if c.teacher_id == LABELS_ONLY else "ot"}
              for c in pool]
    results = run_race(data, trials, config.distill, epochs, config.grace_epochs, config.reduction_factor,
                       run.out_dir / "race", name, seconds, config.trials_per_gpu)
    ran = [r for r in results if not r.error]
    if not ran:
        raise SelkdError(f"race: every trial failed ({results[0].error})")
    finished = [r for r in ran if r.epochs == max(r.epochs for r in ran)]
    order = {(c.teacher_id, c.lam): index for index, c in enumerate(pool)}  # the scan's order, label-only last
    finished.sort(key=lambda r: order[(r.candidate, r.lam)])
    best = race_winner([(r, r.best_val_accuracy) for r in finished], len(run.task.indices("val")), config.guard_z)
    rows = [TrialRow(r.candidate, r.lam, r.epochs, r.best_val_accuracy, r.flops,
                     "winner" if r is best else "finished" if r in finished else
                     f"failed: {r.error}" if r.error else "stopped early", r.gpu, r.device)
            for r in sorted(results, key=lambda r: -r.best_val_accuracy)]
    run.charge(StageRow("race", float(sum(r.flops for r in results)), time.perf_counter() - started,
                        epochs=max(r.epochs for r in results)))
    for row in rows:
        run.progress(f"race: {row.candidate:<24} lambda {row.lam:<4g} {row.epochs} epochs, best validation "
                     f"accuracy {row.val_accuracy:.3f} ({row.status})")
    return rows, best


def race_name(run: Selection, short: list[str]) -> str:
    """A key of what the race is (each trial's distillation run key, the lambdas, the most epochs asked for,
    the scheduler): the same race started again, after a kill say, is restored instead of rerun. The epochs
    the budget allowed are a limit, not part of the key, as for a distillation run's budget."""
    config = run.config
    runs = [run_name("race", config.distill, spec, run.task, cost) for spec, cost in map(run.teacher, short)]
    mixture = f" mixture={run.mixture} weights={run.mixture_weights}" if run.mixture else ""
    key = content_hash(*runs, f"lambdas={config.lambdas} race_epochs={config.race_epochs} "
                              f"grace={config.grace_epochs} reduction={config.reduction_factor}{mixture}")
    return f"race-{key[:12]}"


def final_stage(run: Selection, winner: Candidate) -> tuple[str, DistillResult, str]:
    """Distil the winner in full, train the label-only reference, keep the one the guard picks:
    (what was kept, that student, the decision in words). The stage gets whatever the budget has left, less
    what evaluating its students costs (their test passes and the guard's validation passes)."""
    students = 1 if winner.teacher_id == LABELS_ONLY else 2
    one_epoch = run.costs.labels + (0 if students == 1 else run.costs.distilled)
    left = run.ledger.final_allowance()
    if left is not None and run.ledger.budget.kind == "flops":
        run.ledger.require(left, one_epoch + run.costs.evaluation(students),
                           f"the final distillation after the scan, the race and the teachers' outputs "
                           f"({run.ledger.flops:.3g} FLOPs); one epoch of it and of its label-only reference and "
                           "their evaluation")
        left -= run.costs.evaluation(students)
    if students == 1:
        labels, = final_students(run, [(None, "final-labels-only", 0.0, 1.0)], left)
        return LABELS_ONLY, labels, ("kept the LABEL-ONLY student: the label-only reference won the race, so no "
                                     f"shortlisted teacher helped (validation accuracy {labels.val_accuracy:.3f})")
    share = run.costs.distilled / run.costs.both
    distilled, labels = final_students(run, [(winner.teacher_id, f"final-{winner.teacher_id}", winner.lam, share),
                                             (None, "final-labels-only", 0.0, 1 - share)], left)
    decision = guard(validation_correct(run.task, distilled), validation_correct(run.task, labels),
                     run.config.guard_z, winner.teacher_id)
    return ("distilled", distilled, decision.message) if decision.keep_distilled else \
        (LABELS_ONLY, labels, decision.message)


def final_students(run: Selection, students: list[tuple[str | None, str, float, float]],
                   left: float | None) -> list[DistillResult]:
    """Train the final stage's students, each (teacher id or None, name, lambda, share of what is left), side by
    side on Ray Train; each is charged its training and its evaluation, with the wall time they shared."""
    config, budget, jobs = run.config.distill, run.ledger.budget, []
    for teacher_id, name, lam, share in students:
        limit = {} if left is None else {"max_flops" if budget.kind == "flops" else "max_seconds": left * share}
        members, weights = members_of(teacher_id or ""), None
        if members:  # the mixture won the race: its teachers together, with the race's weights
            teacher, cost = [run.paths[t] for t in members], [run.teacher(t)[1] for t in members]
            weights, name = run.mixture_weights, f"final-mixture-{'+'.join(members)}"
        elif teacher_id is None:
            teacher, cost = None, None
        else:
            teacher, cost = run.paths[teacher_id], run.teacher(teacher_id)[1]
        student = replace(config, lam=lam, **limit) if teacher_id else replace(config, **limit)
        jobs.append(plan_distillation(run.task, teacher, run.out_dir / "students", student, cost, name,
                                      run.progress, run.out_dir / "cache", weights))
    started = time.perf_counter()
    results = train_side_by_side(jobs, run.progress)
    wall = time.perf_counter() - started
    evaluation = run.costs.evaluation(len(students)) // len(students)
    for (teacher_id, *_), result in zip(students, results):
        run.charge(StageRow(f"final {teacher_id or LABELS_ONLY}", float(result.flops + evaluation), wall,
                            result.val_accuracy, result.test_accuracy))
    return results


def validation_correct(task: Task, student: DistillResult) -> np.ndarray:
    """Which validation images the saved student gets right (the guard pairs the two students image by image)."""
    rows = task.indices("val")
    labels, spec = task.labels[rows], teacher_spec(student.student_dir)
    probs = local_teacher_probs(spec, ProbeSet(task.subset(rows), labels, task.label_names, "val"))
    return probs.argmax(1) == labels
