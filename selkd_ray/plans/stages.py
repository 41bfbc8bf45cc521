"""The stages of a selection after its scan: the teachers' outputs on the student's images and the race (Ray
Tune, ASHA); the final stage and its guard are in `final_stage.py`. Each stage asks the selection's one ledger
what it may spend and charges what it did."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..budget import Ledger
from ..errors import SelkdError
from ..io.cache import PredictionCache, prediction_key
from ..progress import Progress
from ..records import ProbeSet, Task, TeacherSpec, content_hash
from ..rows import StageRow, TrialRow
from ..mixture import describe, members_of, mixture_name
from ..selection import (LABELS_ONLY, Candidate, Evidence, Prior, SelectConfig, candidates, cross_fitted,
                         race_epochs, race_order, race_winner, validation_folds)
from ..training.data import StudentData
from ..training.student_data import (mixed, needs_teacher_outputs, run_name, student_data,
                                     student_images, teacher_spec)
from .inputs import cost_from_scan
from .mixtures import plan_cover
from .scan import ScanResult
from .teacher_outputs import cached_teacher_probs

# What a shortlisted teacher's outputs can fail with after the scan (one line each, the teacher left out).
MEMBER_FAILURES = (SelkdError, OSError, RuntimeError, ValueError)


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
    mixture_rule: str = ""  # how the mixture's members were chosen, when the coverage rule chose them
    failed: dict[str, str] = field(default_factory=dict)  # shortlisted teachers whose outputs failed, and why
    prior: Prior | None = None  # what past races say of distillation here (`selection.experience_prior`)
    evidence: Evidence | None = None  # the race's cross-fitted verdict against labels alone, when it gave one

    def drop(self, teacher_id: str, error: Exception) -> None:
        """A shortlisted teacher whose outputs on the student's images cannot be had (its folder changed since
        the scan, its weights no longer load, its forward pass fails): one line, and the selection goes on
        without it; a mixture keeps its other members, their weights renormalised, while two remain."""
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        self.failed[teacher_id] = reason
        self.progress(f"teacher outputs: {teacher_id} failed ({reason}); the selection goes on without it")
        if teacher_id not in self.mixture:
            return
        kept = [(t, w) for t, w in zip(self.mixture, self.mixture_weights) if t != teacher_id]
        if len(kept) < 2 or sum(w for _, w in kept) <= 0:
            self.mixture, self.mixture_weights = (), ()
            self.progress(f"mixture: fewer than two members left without {teacher_id}; no mixture races")
            return
        total = sum(w for _, w in kept)
        self.mixture, self.mixture_weights = tuple(t for t, _ in kept), tuple(w / total for _, w in kept)
        self.progress(f"mixture: without {teacher_id}, {describe(self.mixture, self.mixture_weights)} races as one "
                      "candidate")

    def usable(self, teacher_ids: list[str]) -> list[str]:
        """The teachers whose folder still reads as the scan saw it; the others dropped (`drop`)."""
        kept = []
        for teacher_id in teacher_ids:
            if teacher_id in self.failed:
                continue
            try:
                self.teacher(teacher_id)
                kept.append(teacher_id)
            except MEMBER_FAILURES as error:
                self.drop(teacher_id, error)
        return kept

    @cached_property
    def folds(self) -> np.ndarray:
        """The validation images' two folds, over which the race's verdict is cross-fitted."""
        return validation_folds(self.task)

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

    @cached_property
    def validation_images(self) -> ProbeSet:
        """The validation rows as a refit's teachers see them (keyed like the student images, so cached alike)."""
        rows = self.task.indices("val")
        return ProbeSet(self.task.subset(rows), self.task.labels[rows], self.task.label_names,
                        self.task.rows_hash(rows, "student-images"))

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
        for teacher_id in self.usable(teacher_ids):
            spec, cost = self.teacher(teacher_id)
            cached = prediction_key(spec, images) in self.cache
            if needs_teacher_outputs(spec, self.config.distill, cost) and not cached:
                total += spec.flops_per_sample * len(images)
        return total

    def teacher_data(self, teacher_ids: list[str]) -> dict[str, StudentData]:
        """Each teacher's student data, computing (on Ray Data) the outputs not cached yet; what those forward
        passes cost is charged as its own stage. A teacher whose outputs fail is left out (`drop`)."""
        started, flops, data = time.perf_counter(), self.outputs_flops(teacher_ids), {}
        outputs = lambda spec, images: cached_teacher_probs(spec, images, self.cache, self.progress)  # noqa: E731
        for teacher_id in self.usable(teacher_ids):
            spec, cost = self.teacher(teacher_id)
            try:
                data[teacher_id] = student_data(self.task, spec, self.config.distill, cost, outputs)
            except MEMBER_FAILURES as error:
                self.drop(teacher_id, error)
        self.charge(StageRow("teacher outputs", flops, time.perf_counter() - started))
        return data


def race(run: Selection, short: list[str]) -> tuple[Candidate, list[TrialRow], str]:
    """(the winning candidate, the trial rows, a note when there was no race). Whatever happens, the winner's
    outputs on the student images are computed (and charged) here, before the final stage's share is fixed.
    Shortlisted teachers whose outputs fail are left out (`Selection.drop`); the race goes on with the rest."""
    pool = candidates(short, run.config.lambdas, mixture_name(run.mixture) if run.mixture else "")
    epochs, note = race_length(run, short, pool)
    if note:
        return Candidate(first_usable(run, short), run.config.distill.lam), [], note
    data = {LABELS_ONLY: student_data(run.task, None, run.config.distill, None), **run.teacher_data(short)}
    short = [t for t in short if t in data]
    if not short:
        raise SelkdError(f"teacher outputs: every shortlisted teacher failed ({'; '.join(run.failed.values())})")
    if plan_cover(run, short, data):  # a mixture the budget's race length did not count: counted now
        epochs, note = race_length(run, short, candidates(short, run.config.lambdas, mixture_name(run.mixture)))
        if note:
            return Candidate(short[0], run.config.distill.lam), [], note
    pool = candidates(short, run.config.lambdas, mixture_name(run.mixture) if run.mixture else "")
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


def first_usable(run: Selection, short: list[str]) -> str:
    """Without a race: the first shortlisted teacher whose outputs on the student's images can be had."""
    for teacher_id in short:
        if run.teacher_data([teacher_id]):
            return teacher_id
    raise SelkdError(f"teacher outputs: every shortlisted teacher failed ({'; '.join(run.failed.values())})")


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
    from ..distributed.race import race_state, run_race

    config, name = run.config, race_name(run, short)
    state = race_state(run.out_dir / "race" / name)
    if state == "whole":
        run.progress(f"race: {name} ran before; its finished trials stand and unfinished ones run again")
    else:
        if state == "incomplete":
            run.progress(f"race: {name} was stopped before Ray Tune recorded its state; the race starts afresh")
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
    order = race_order(pool, covering=run.mixture_rule.startswith("covering"))
    finished.sort(key=lambda r: order[(r.candidate, r.lam)])
    best = race_winner([(r, r.val_correct) for r in finished], config.guard_z)
    reference = next((r for r in finished if r.candidate == LABELS_ONLY), None)
    if reference is not None and best is not reference and len(run.folds) == len(best.val_correct):
        run.evidence, winners = cross_fitted([(r, r.val_correct) for r in finished], reference, run.folds,
                                             config.guard_z)
        run.progress("race: the folds' winners " + ", ".join(f"{w.candidate} (lambda {w.lam:g})" for w in winners)
                     + f"; pooled against labels alone, {run.evidence.better} image(s) better and "
                       f"{run.evidence.worse} worse of {run.evidence.images}")
    mixture = describe(run.mixture, run.mixture_weights) if run.mixture else ""
    mixture += f" ({run.mixture_rule})" if run.mixture_rule else ""
    rows = [TrialRow(r.candidate, r.lam, r.epochs, r.best_val_accuracy, r.flops,
                     "winner" if r is best else "finished" if r in finished else
                     f"failed: {r.error}" if r.error else "stopped early", r.gpu, r.device,
                     mixture if members_of(r.candidate) else "", r.correct)
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
    mixture = (f" mixture={run.mixture} weights={run.mixture_weights} per_image={config.distill.per_image_weights}"
               if run.mixture else "")
    key = content_hash(*runs, f"lambdas={config.lambdas} race_epochs={config.race_epochs} "
                              f"grace={config.grace_epochs} reduction={config.reduction_factor}{mixture}",
                       "paired")  # trials record their per-image results (an older race without them reruns)
    return f"race-{key[:12]}"
