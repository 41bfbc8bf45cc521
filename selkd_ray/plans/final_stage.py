"""The last stage of a selection: the race winner distilled in full beside a label-only reference (Ray Train:
side by side, or one after the other in one run when both are small, `distributed/train.packs`), and the guard that keeps the label-only student unless distillation beat it on validation by more
than noise. Charged to the selection's one ledger like every stage."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..mixture import members_of
from ..records import ProbeSet, Task
from ..rows import StageRow
from ..selection import GUARD_SPLIT, LABELS_ONLY, Candidate, guard
from ..training.student_data import local_teacher_probs, teacher_spec
from .distill import DistillResult, plan_distillation, train_side_by_side
from .stages import Selection


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
    decision = guard(validation_correct(run.split, distilled), validation_correct(run.split, labels),
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
        jobs.append(plan_distillation(run.split, teacher, run.out_dir / "students", student, cost, name,
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
    """Which of the guard's validation images the saved student gets right (the guard pairs the two students
    image by image, on images that chose neither the race's winner nor either student's epoch, where the task
    has them: `selection.split_validation`)."""
    rows = task.indices(GUARD_SPLIT)
    rows = rows if len(rows) else task.indices("val")
    labels, spec = task.labels[rows], teacher_spec(student.student_dir)
    probs = local_teacher_probs(spec, ProbeSet(task.subset(rows), labels, task.label_names, "guard"))
    return probs.argmax(1) == labels
