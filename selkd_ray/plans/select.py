"""`select_student`: the whole path under one budget: scan, a race of short distillations among the shortlisted
teachers (Ray Tune, ASHA) beside a label-only reference, the winner's full distillation (Ray Train), and the
guard that keeps the label-only student unless distillation beat it on the validation split by more than noise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from ..address import check_address
from .distill import DistillResult, plan_distillation, train_side_by_side
from .inputs import as_task, check_outputs, cost_from_scan
from .scan import ScanResult, scan
from .teacher_outputs import cached_teacher_probs
from ..budget import Budget, parse_budget
from ..training.student_data import (local_teacher_probs, needs_teacher_outputs, run_name, student_data, student_images,
                           teacher_spec)
from ..errors import SelkdError
from ..io.cache import PredictionCache, prediction_key
from ..io.fs import Location, writable_folder
from ..io.lock import ScanLock
from ..io.results import write_selection
from ..models.timm_models import require_architecture
from ..progress import Progress, quiet
from ..scoring.scores import SCORERS
from ..records import ProbeSet, Task, TeacherSpec, content_hash
from ..rows import DecisionRow, StageRow, TrialRow
from ..selection import (LABELS_ONLY, Candidate, SelectConfig, StagePlan, candidates, final_allowance, guard,
                        plan_stages, race_allowance, race_epochs, race_winner, require_final_epoch,
                        shortlist)
from ..training.loop import StudentData, epoch_flops
from ..zoo.index import require_zoo


@dataclass(frozen=True)
class SelectResult:
    student_dir: Path  # the student kept: distilled, or label-only
    kept: str  # "distilled" or "labels-only"
    teacher: str  # the race winner's teacher id ('labels-only' when the reference won the race)
    lam: float
    test_accuracy: float  # of the kept student (reported, never used to decide)
    val_accuracy: float
    message: str  # the guard's decision in words
    stages: list[StageRow]  # what each stage spent
    trials: list[TrialRow]  # the race, one row per candidate ([] without a race)
    scan: ScanResult
    selection_path: Path | str
    summary: str


@dataclass
class Selection:
    """What the stages of one selection share: inputs, the plan, the scan's results, and the stage rows as
    each stage appends its own."""

    task: Task
    out_dir: Path
    config: SelectConfig
    plan: StagePlan
    scanned: ScanResult
    paths: dict[str, str]  # teacher id -> folder, for every ranked teacher
    progress: Progress
    distilled_epoch: int  # training FLOPs of one epoch with a teacher, and of one label-only epoch
    labels_epoch: int
    stages: list[StageRow] = field(default_factory=list)
    teachers: dict[str, tuple[TeacherSpec, np.ndarray | None]] = field(default_factory=dict)

    @property
    def spent(self) -> float:
        """FLOPs charged so far, every stage's."""
        return sum(stage.flops for stage in self.stages)

    @cached_property
    def cache(self) -> PredictionCache:
        return PredictionCache(self.out_dir / "cache")

    @cached_property
    def student_images(self) -> ProbeSet:
        return student_images(self.task)

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

    def outputs(self, spec: TeacherSpec, images: ProbeSet) -> np.ndarray:
        """A teacher's outputs on the student images, from the cache or a runner actor (which caches them)."""
        return cached_teacher_probs(spec, images, self.cache)

    def teacher_data(self, teacher_ids: list[str]) -> dict[str, StudentData]:
        """Each teacher's student data, running (on a runner actor) the teachers whose outputs are not cached
        yet; what those forward passes cost is charged as its own stage."""
        started, flops, data = time.perf_counter(), self.outputs_flops(teacher_ids), {}
        for teacher_id in teacher_ids:
            spec, cost = self.teacher(teacher_id)
            data[teacher_id] = student_data(self.task, spec, self.config.distill, cost, self.outputs)
        self.stages.append(StageRow("teacher outputs", flops, time.perf_counter() - started))
        return data


def budget_text(amount: float, budget: Budget) -> str:
    return f"{amount:.6g}" if budget.kind == "flops" else f"{amount:.3f}s"


def epoch_costs(task: Task, config: SelectConfig) -> tuple[int, int]:
    """Training FLOPs of one epoch for a distilled student and for a label-only one."""
    data = student_data(task, None, config.distill, None)
    return epoch_flops(data, replace(config.distill, loss="ot")), epoch_flops(data, replace(config.distill, loss="ce"))


def select_student(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path,
                   config: SelectConfig = SelectConfig(), address: str | None = None,
                   progress: Progress = quiet) -> SelectResult:
    task = as_task(task, progress, address)
    check_address(address)
    require_architecture(config.distill.student, "--student")
    for name in config.scan.scorers:
        SCORERS.get(name, "--scorer")
    require_zoo(Path(zoo_dir))
    out_dir = writable_folder(Path(out_dir).resolve()).native()
    check_outputs(Location(out_dir))
    budget = parse_budget(config.budget)
    distilled_epoch, labels_epoch = epoch_costs(task, config)
    final_need = config.distill.epochs * (distilled_epoch + labels_epoch)
    plan = plan_stages(budget, config, final_need)
    if budget is not None:
        require_final_epoch(budget, plan.final or 0.0, distilled_epoch + labels_epoch)
    for note in plan.notes:
        progress(f"budget: {note}")
    scan_config = config.scan
    if budget is not None:
        scan_config = replace(scan_config, budget=budget_text(plan.scan, budget), eta=scan_config.eta or 3)
    with ScanLock(out_dir):  # one writer of this output from the scan to the decision
        started = time.perf_counter()
        scanned = scan(zoo_dir, task, out_dir, scan_config, address=address, progress=progress)
        if not scanned.ranked:
            raise SelkdError(f"{zoo_dir}: no teacher could be scored, nothing to select from")
        run = Selection(task, out_dir, config, plan, scanned,
                        {row.teacher_id: row.path for row in scanned.ranked}, progress, distilled_epoch,
                        labels_epoch)
        run.stages.append(StageRow("scan", float(scanned.flops), scanned.seconds))
        return conclude(run, started)


def conclude(run: Selection, started: float) -> SelectResult:
    """After the scan: the race, the final stage and the guard, then `selection.parquet` and the summary."""
    config, budget, stages = run.config, run.plan.budget, run.stages
    ranked_ids = [row.teacher_id for row in run.scanned.ranked]
    winner, trials, race_note = race(run, shortlist(ranked_ids, config.shortlist, config.pinned))
    if race_note:
        run.progress(race_note)
    kept, student, message = final_stage(run, winner)
    amount = budget.amount if budget is not None and budget.kind == "flops" else None
    stages = [replace(stage, budget=amount) for stage in stages]
    decision = DecisionRow(winner.teacher_id, winner.lam, student.val_accuracy, student.test_accuracy, kept, message,
                           run.spent, time.perf_counter() - started)
    rows = [*trials, *stages, decision]
    selection_path = write_selection(rows, run.out_dir / "selection.parquet")
    summary = describe(stages, budget, trials, race_note, message, student)
    return SelectResult(student.student_dir, kept, winner.teacher_id, winner.lam, student.test_accuracy,
                        student.val_accuracy, message, stages, trials, run.scanned, selection_path, summary)


def race(run: Selection, short: list[str]) -> tuple[Candidate, list[dict], str]:
    """(the winning candidate, the trial rows, a note when there was no race). Whatever happens, the winner's
    outputs on the student images are computed (and charged) here, before the final stage's share is fixed."""
    config, plan, progress = run.config, run.plan, run.progress
    top = Candidate(short[0], config.distill.lam)
    pool = candidates(short, config.lambdas)
    epochs = config.race_epochs
    note = f"no race (--no-race): the scan's top teacher {short[0]} goes straight to distillation"
    if config.race:
        costs = [run.labels_epoch if c.teacher_id == LABELS_ONLY else run.distilled_epoch for c in pool]
        allowance = race_allowance(plan, run.spent + run.outputs_flops(short))
        epochs = race_epochs(allowance, costs, config)
        note = ("" if epochs >= 1 else
                f"no budget left for a race ({allowance or 0:.3g} FLOPs for {len(pool)} candidates once the "
                f"shortlist's outputs on the student images are paid): the scan's top teacher {short[0]} goes "
                "straight to distillation")
    if note:
        run.teacher_data([short[0]])
        return top, [], note
    data = {LABELS_ONLY: student_data(run.task, None, config.distill, None), **run.teacher_data(short)}
    seconds = None
    if plan.budget is not None and plan.budget.kind == "seconds":  # the outputs' wall time comes out of the race's
        seconds = plan.race - run.stages[-1].seconds  # the "teacher outputs" row just appended
        if seconds <= 0:
            return top, [], (f"no time left for a race after the shortlist's outputs on the student images: the "
                             f"scan's top teacher {short[0]} goes straight to distillation")
    name = race_name(run, short)
    if (run.out_dir / "race" / name).is_dir():
        progress(f"race: {name} ran before; its finished trials stand and unfinished ones run again")
    else:
        progress(f"race: {len(pool)} candidates ({', '.join(c.name for c in pool)}), up to {epochs} epochs "
                 f"each, ASHA (grace {config.grace_epochs}, reduction {config.reduction_factor})")
    from ..distributed.race import run_race

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
    run.stages.append(StageRow("race", float(sum(r.flops for r in results)), time.perf_counter() - started,
                               epochs=max(r.epochs for r in results)))
    for row in rows:
        progress(f"race: {row.candidate:<24} lambda {row.lam:<4g} {row.epochs} epochs, best validation "
                 f"accuracy {row.val_accuracy:.3f} ({row.status})")
    return Candidate(best.candidate, best.lam), rows, ""


def race_name(run: Selection, short: list[str]) -> str:
    """A key of what the race is (each trial's distillation run key, the lambdas, the most epochs asked for,
    the scheduler): the same race started again, after a kill say, is restored instead of rerun. The epochs
    the budget allowed are a limit, not part of the key, as for a distillation run's budget."""
    config = run.config
    runs = [run_name("race", config.distill, spec, run.task, cost) for spec, cost in map(run.teacher, short)]
    key = content_hash(*runs, f"lambdas={config.lambdas} race_epochs={config.race_epochs} "
                              f"grace={config.grace_epochs} reduction={config.reduction_factor}")
    return f"race-{key[:12]}"


def final_stage(run: Selection, winner: Candidate) -> tuple[str, DistillResult, str]:
    """Distil the winner in full, train the label-only reference, keep the one the guard picks:
    (what was kept, that student, the decision in words). The stage gets whatever the budget has left."""
    left = final_allowance(run.plan, run.spent)
    one_epoch = run.labels_epoch + (0 if winner.teacher_id == LABELS_ONLY else run.distilled_epoch)
    if left is not None:
        require_final_epoch(run.plan.budget, left, one_epoch, f" after the scan, the race and the teachers' "
                                                              f"outputs ({run.spent:.3g} FLOPs)")
    if winner.teacher_id == LABELS_ONLY:
        labels, = final_students(run, [(None, "final-labels-only", 0.0, 1.0)], left)
        return LABELS_ONLY, labels, ("kept the LABEL-ONLY student: the label-only reference won the race, so no "
                                     f"shortlisted teacher helped (validation accuracy {labels.val_accuracy:.3f})")
    share = run.distilled_epoch / (run.distilled_epoch + run.labels_epoch)
    distilled, labels = final_students(run, [(winner.teacher_id, f"final-{winner.teacher_id}", winner.lam, share),
                                             (None, "final-labels-only", 0.0, 1 - share)], left)
    decision = guard(validation_correct(run.task, distilled), validation_correct(run.task, labels),
                     run.config.guard_z, winner.teacher_id)
    return ("distilled", distilled, decision.message) if decision.keep_distilled else \
        (LABELS_ONLY, labels, decision.message)


def final_students(run: Selection, students: list[tuple[str | None, str, float, float]],
                   left: float | None) -> list[DistillResult]:
    """Train the final stage's students, each (teacher id or None, name, lambda, share of what is left), side by
    side on Ray Train; each stage row carries the wall time they shared."""
    config, budget, jobs = run.config.distill, run.plan.budget, []
    for teacher_id, name, lam, share in students:
        limit = {} if left is None else {"max_flops" if budget.kind == "flops" else "max_seconds": left * share}
        teacher, cost = (None, None) if teacher_id is None else (run.paths[teacher_id], run.teacher(teacher_id)[1])
        jobs.append(plan_distillation(run.task, teacher, run.out_dir / "students", replace(config, lam=lam, **limit)
                                      if teacher_id else replace(config, **limit), cost, name, run.progress,
                                      run.out_dir / "cache"))
    started = time.perf_counter()
    results = train_side_by_side(jobs, run.progress)
    wall = time.perf_counter() - started
    run.stages.extend(stage_row(f"final {teacher_id or LABELS_ONLY}", result, wall)
                      for (teacher_id, *_), result in zip(students, results))
    return results


def stage_row(name: str, result: DistillResult, seconds: float) -> StageRow:
    return StageRow(name, float(result.flops), seconds, result.val_accuracy, result.test_accuracy)


def validation_correct(task: Task, student: DistillResult) -> np.ndarray:
    """Which validation images the saved student gets right (the guard pairs the two students image by image)."""
    rows = task.indices("val")
    labels, spec = task.labels[rows], teacher_spec(student.student_dir)
    probs = local_teacher_probs(spec, ProbeSet(task.subset(rows), labels, task.label_names, "val"))
    return probs.argmax(1) == labels


def describe(stages: list[StageRow], budget: Budget | None, trials: list[TrialRow], race_note: str, message: str,
             student: DistillResult) -> str:
    lines = ["Spent by stage:"]
    for stage in stages:
        share = f" ({stage.flops / budget.amount:.1%} of the budget)" if budget and budget.kind == "flops" else ""
        lines.append(f"  {stage.candidate:<28} {stage.flops:>10.3g} FLOPs {stage.seconds:>7.1f} s{share}")
    total = sum(s.flops for s in stages)
    lines.append(f"  {'total':<28} {total:>10.3g} FLOPs" + (f" of a {budget} budget" if budget else " (no budget)"))
    if race_note:
        lines.append(race_note)
    elif trials:
        winner = next(t for t in trials if t.status == "winner")
        lines.append(f"Race winner: {winner.candidate} (lambda {winner.lam:g}), best validation accuracy "
                     f"{winner.val_accuracy:.3f} after {winner.epochs} epochs")
    lines.append(f"Guard: {message}")
    lines.append(f"Student: {student.student_dir} (test accuracy {student.test_accuracy:.3f})")
    return "\n".join(lines)
