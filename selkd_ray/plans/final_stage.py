"""The last stage of a selection: the student the race chose, trained in full on every labelled image (Ray Train).

Where the race gave a verdict against labels alone (its label-only trial finished beside the winner: the usual
case), the guard decides on it before anything trains, and only the chosen student is trained, on the train and
validation labels together with the last epoch of its schedule kept (`DistillConfig.refit`, the AutoML refit):
every decision was taken on the validation images, so the final student may learn from them. Without one (no
race, or a race whose label-only trial did not finish) the winner and a label-only reference are trained side
by side on the training labels and the guard pairs them on every validation image. Charged to the selection's
one ledger like every stage."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..io.cache import prediction_key
from ..mixture import members_of
from ..records import ProbeSet, Task, TeacherSpec
from ..rows import StageRow
from ..selection import LABELS_ONLY, Candidate, GuardDecision, decide, guard
from ..training.student_data import local_teacher_probs, teacher_spec
from .distill import DistillResult, plan_distillation, train_side_by_side
from .stages import Selection
from .teacher_outputs import cached_teacher_probs


@dataclass(frozen=True)
class FinalChoice:
    """What the selection hands back: which student it kept, the student, the decision in words and as
    numbers (None where the race's winner was labels alone), and the kept student's validation accuracy (its
    race trial's, for a refit student, which trained on the validation images)."""

    kept: str  # "distilled" or "labels-only"
    student: DistillResult
    message: str
    decision: GuardDecision | None
    val_accuracy: float


def final_stage(run: Selection, winner: Candidate, race_accuracy: dict[str, float]) -> FinalChoice:
    """Decide (on the race's verdict where it gave one), then train what was decided. `race_accuracy`: each
    candidate's validation accuracy in the race (the kept student's, when it is refit)."""
    refit = run.evidence is not None or (winner.teacher_id == LABELS_ONLY and bool(race_accuracy))
    left = allowance(run, 1 if refit or winner.teacher_id == LABELS_ONLY else 2)
    if winner.teacher_id == LABELS_ONLY:
        labels, = final_students(run, [(None, "final-labels-only", 0.0, 1.0)], left, refit)
        accuracy = race_accuracy.get(LABELS_ONLY, labels.val_accuracy)
        return FinalChoice(LABELS_ONLY, labels, "kept the LABEL-ONLY student: the label-only reference won the race, "
                           f"so no shortlisted teacher helped (validation accuracy {accuracy:.3f})", None, accuracy)
    if refit:
        decision = decide(run.evidence, run.config.guard_z, winner.teacher_id, run.prior)
        run.progress(f"guard: {decision.message}")
        chosen = (winner.teacher_id, f"final-{winner.teacher_id}", winner.lam, 1.0) if decision.keep_distilled \
            else (None, "final-labels-only", 0.0, 1.0)
        student, = final_students(run, [chosen], left, refit=True)
        name = winner.teacher_id if decision.keep_distilled else LABELS_ONLY
        accuracy = race_accuracy.get(name, 0.0)
        return FinalChoice("distilled" if decision.keep_distilled else LABELS_ONLY, student, decision.message,
                           decision, accuracy)
    share = run.costs.distilled / run.costs.both
    distilled, labels = final_students(run, [(winner.teacher_id, f"final-{winner.teacher_id}", winner.lam, share),
                                             (None, "final-labels-only", 0.0, 1 - share)], left)
    how = (f"both final students on the {len(run.task.indices('val'))} validation images" +
           (" (which also chose the race's winner: biased toward distillation)" if race_accuracy else ""))
    decision = guard(validation_correct(run.task, distilled), validation_correct(run.task, labels),
                     run.config.guard_z, winner.teacher_id, run.prior, how)
    student = distilled if decision.keep_distilled else labels
    return FinalChoice("distilled" if decision.keep_distilled else LABELS_ONLY, student, decision.message, decision,
                       student.val_accuracy)


def allowance(run: Selection, students: int) -> float | None:
    """What the budget leaves the stage's training, less its students' evaluation (test passes, and the guard's
    validation passes when two are paired); one epoch of it that the budget cannot pay is one line."""
    one_epoch = run.costs.labels + (0 if students == 1 else run.costs.distilled)
    left = run.ledger.final_allowance()
    if left is not None and run.ledger.budget.kind == "flops":
        run.ledger.require(left, one_epoch + run.costs.evaluation(students),
                           f"the final distillation after the scan, the race and the teachers' outputs "
                           f"({run.ledger.flops:.3g} FLOPs); one epoch of it and of its label-only reference and "
                           "their evaluation")
        left -= run.costs.evaluation(students)
    return left


def refit_outputs(run: Selection, spec: TeacherSpec, pool: ProbeSet) -> np.ndarray:
    """A teacher's outputs on a refit's student images (train, validation and unlabelled rows): the race's cached
    outputs on the train and unlabelled rows and the validation rows' own (cached too), in the pool's row order."""
    probs: dict[int, np.ndarray] = {}
    for part in (run.student_images, run.validation_images):
        probs.update(zip(part.images.rows.tolist(), cached_teacher_probs(spec, part, run.cache, run.progress)))
    return np.stack([probs[row] for row in pool.images.rows.tolist()])


def final_students(run: Selection, students: list[tuple[str | None, str, float, float]],
                   left: float | None, refit: bool = False) -> list[DistillResult]:
    """Train the final stage's students, each (teacher id or None, name, lambda, share of what is left), side by
    side on Ray Train; each is charged its training, its evaluation and (refit) its teachers' outputs on the
    validation images, with the wall time they shared. A refit student's cost matrices are fitted on every
    labelled image (none is passed: `student_data` fits them on the refit's labels)."""
    config, budget, jobs, extra = run.config.distill, run.ledger.budget, [], []
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
        outputs = None
        if refit:
            student, cost = replace(student, refit=True, keep="last"), ([None] * len(members) if members else None)
            outputs = partial(refit_outputs, run)
            specs = [run.teacher(t)[0] for t in (members or ([teacher_id] if teacher_id else []))]
            extra.append(sum(spec.flops_per_sample * len(run.task.indices("val")) for spec in specs
                             if prediction_key(spec, run.validation_images) not in run.cache))
        else:
            extra.append(0)
        jobs.append(plan_distillation(run.task, teacher, run.out_dir / "students", student, cost,
                                      name + ("-refit" if refit else ""), run.progress, run.out_dir / "cache",
                                      weights, outputs=outputs))
    started = time.perf_counter()
    results = train_side_by_side(jobs, run.progress)
    wall = time.perf_counter() - started
    evaluation = run.costs.evaluation(len(students)) // len(students)
    for (teacher_id, *_), result, more in zip(students, results, extra):
        run.charge(StageRow(f"final {teacher_id or LABELS_ONLY}", float(result.flops + evaluation + more), wall,
                            result.val_accuracy, result.test_accuracy))
    return results


def validation_correct(task: Task, student: DistillResult) -> np.ndarray:
    """Which validation images the saved student gets right (the guard pairs the two students image by image)."""
    rows = task.indices("val")
    labels, spec = task.labels[rows], teacher_spec(student.student_dir)
    probs = local_teacher_probs(spec, ProbeSet(task.subset(rows), labels, task.label_names, "guard"))
    return probs.argmax(1) == labels
