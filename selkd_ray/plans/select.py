"""`select_student`: the whole path under one budget: scan, a race of short distillations among the shortlisted
teachers (Ray Tune, ASHA) beside a label-only reference, the winner's full distillation (Ray Train), and the
guard that keeps the label-only student unless distillation beat it on the validation split by more than noise.

Reads top to bottom: check the inputs, plan the budget (one ledger for every stage), scan, race, final stage
and guard (`stages.py`, `final_stage.py`), write selection.parquet, summarise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..address import check_address
from ..budget import Budget, Ledger, parse_budget
from ..config import ScanConfig
from ..errors import SelkdError
from ..io.fs import Location, writable_folder
from ..io.lock import ScanLock
from ..experience import race_outcomes
from ..io.experience import append_experience
from ..io.results import write_selection
from ..models.timm_models import require_architecture
from ..progress import Progress, quiet
from ..records import Task, content_hash
from ..rows import DecisionRow, StageRow, TrialRow
from ..scoring import SCORERS
from ..selection import PRIOR_MIN_TASKS, LABELS_ONLY, Prior, SelectConfig, experience_prior, shortlist
from ..training.loop import epoch_flops, evaluation_flops
from ..training.student_data import student_data
from ..zoo.index import require_zoo
from .distill import DistillResult, with_usable_gpus
from .inputs import as_task, check_outputs
from .scan import ScanResult, experience_folder, scan
from .final_stage import final_stage
from .mixtures import plan_top_k
from .stages import EpochCosts, Selection, race, race_name


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
    experience_path: Path | str | None = None  # the part of the experience table this selection wrote
    mixture: tuple[str, ...] = ()  # the race's mixture of teachers (`--mixture`), and their weights
    mixture_weights: tuple[float, ...] = ()


def select_student(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path,
                   config: SelectConfig = SelectConfig(), address: str | None = None,
                   progress: Progress = quiet, runners=None) -> SelectResult:
    """Select, distil and guard a student for the task from the zoo, every stage charged to one budget.

    `runners`: a `distributed.runners.RunnerPool` for the scan to use and leave running (as `scan` takes it),
    for a driver that runs many selections."""
    config = replace(config, distill=replace(config.distill, keep="last", patience=None))  # the selection's recipe
    made = not Path(out_dir).exists()
    task, out_dir = check_inputs(zoo_dir, task, out_dir, config, address, progress)
    try:
        prior, prior_line = guard_prior(config, task, out_dir)  # a bad experience part: one line, before Ray
        config = with_gpu_checked(config, address, progress)
    except SelkdError:
        if made and out_dir.is_dir() and not any(out_dir.iterdir()):  # refused before any work: nothing left
            out_dir.rmdir()
        raise
    costs = selection_costs(task, config)
    ledger = Ledger(parse_budget(config.budget))
    scan_limit = plan_budget(ledger, config, costs, progress)
    with ScanLock(out_dir):  # one writer of this output from the scan to the decision
        progress(prior_line)
        started = time.perf_counter()
        scanned = scan(zoo_dir, task, out_dir, scan_config(config, ledger.budget, scan_limit), address=address,
                       progress=progress, runners=runners, ledger=ledger.for_stage(scan_limit))
        if not scanned.ranked:
            raise SelkdError(f"{zoo_dir}: no teacher could be scored, nothing to select from")
        run = Selection(task, out_dir, config, ledger, scanned, progress, costs, prior=prior)
        run.charge(StageRow("scan", float(scanned.flops), scanned.seconds), paid=True)  # charged as it ran
        return conclude(run, started)


def check_inputs(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path, config: SelectConfig,
                 address: str | None, progress: Progress) -> tuple[Task, Path]:
    """Every input read and checked, one line each, before anything is written."""
    parse_budget(config.budget)  # a bad budget: one line before the task is read or Ray starts
    task = as_task(task, progress, address)
    check_address(address)
    require_architecture(config.distill.student, "--student")
    for name in config.scan.scorers:
        SCORERS.get(name, "--scorer")
    teachers = {found.teacher_id for found in require_zoo(Path(zoo_dir))}
    out_dir = Path(out_dir).resolve()
    check_pinned(config.pinned, teachers, Location(out_dir) / "catalogue.parquet", zoo_dir)  # before it is made
    out_dir = writable_folder(out_dir).native()
    check_outputs(Location(out_dir))
    if config.scan.experience:
        writable_folder(config.scan.experience, "--experience")
    return task, out_dir


def guard_prior(config: SelectConfig, task: Task, out_dir: Path) -> tuple[Prior | None, str]:
    """The guard's prior from the experience table's past races (this task's own outcomes left out, so a
    selection started again decides as it did), and the line that says it; every part checked first, as every
    reader of the table checks it (`io.experience.read_experience`)."""
    from ..io.experience import read_experience

    where = experience_folder(config.scan, out_dir)
    outcomes: dict[str, list[float]] = {}
    for row in read_experience(where, set(SCORERS.names())):
        if row.task_hash != task.content_hash:
            outcomes.setdefault(row.task_hash, []).append(row.outcome)
    prior = experience_prior(outcomes, str(where))  # a string: selection.parquet holds it
    return prior, (f"guard: {prior.describe()}" if prior else
                   f"guard: no prior ({len(outcomes)} past task(s) in the experience table, {PRIOR_MIN_TASKS} "
                   "needed): this task's evidence decides alone")


def check_pinned(pinned: tuple[str, ...], teachers: set[str], catalogue: Location, zoo_dir: str | Path) -> None:
    """A `--teacher` that is no teacher of the zoo (by its folder's id, or the id the output's catalogue kept for
    a moved folder) is one line before the scan, not after it."""
    from ..io.catalogue import read_catalogue

    if pinned and catalogue.is_file():
        teachers |= {spec.teacher_id for spec, _, _ in read_catalogue(catalogue)}
    missing = [teacher for teacher in pinned if teacher not in teachers]
    if missing:
        raise SelkdError(f"--teacher: {', '.join(repr(m) for m in missing)} is not a teacher of {zoo_dir} (its "
                         f"teachers: {', '.join(sorted(teachers)[:8])}{', ...' if len(teachers) > 8 else ''})")


def with_gpu_checked(config: SelectConfig, address: str | None, progress: Progress) -> SelectConfig:
    """Ray started (or joined) before the scan, since the race and the final stage need it even when every
    teacher's scores come from the cache; `--gpus` the cluster cannot give refused here, before any work."""
    from ..distributed.runtime import connect

    connect(address)
    return replace(config, distill=with_usable_gpus(config.distill, progress))


def epoch_costs(task: Task, config: SelectConfig) -> tuple[int, int]:
    """FLOPs of one epoch (validation included) for a distilled student and for a label-only one."""
    data = student_data(task, None, config.distill, None)
    return epoch_flops(data, replace(config.distill, loss="ot")), epoch_flops(data, replace(config.distill, loss="ce"))


def selection_costs(task: Task, config: SelectConfig) -> EpochCosts:
    """What the budget plans with: an epoch of each student, and a student's test and guard passes."""
    data = student_data(task, None, config.distill, None)
    return EpochCosts(*epoch_costs(task, config), evaluation_flops(data, config.distill, len(task.indices("test"))),
                      evaluation_flops(data, config.distill, len(task.indices("val"))))


def plan_budget(ledger: Ledger, config: SelectConfig, costs: EpochCosts, progress: Progress) -> float | None:
    """Split the budget before the scan (the scan's share, the final stage's reserve) and refuse, in one line,
    a budget whose final stage cannot pay one epoch of both students and their evaluation."""
    final_need = config.distill.epochs * costs.both + costs.evaluation(2)
    scan_limit = ledger.plan_selection(config.scan_share, final_need)
    ledger.require(ledger.reserved, costs.both + costs.evaluation(2), "the final distillation; one epoch of it and "
                                                                       "of its label-only reference and their evaluation")
    for note in ledger.notes:
        progress(f"budget: {note}")
    return scan_limit


def scan_config(config: SelectConfig, budget: Budget | None, limit: float | None) -> ScanConfig:
    """The selection's scan: its share of the budget (as the history records it) and halving under a budget."""
    if budget is None:
        return config.scan
    text = f"{limit:.6g}" if budget.kind == "flops" else f"{limit:.3f}s"
    return replace(config.scan, budget=text, eta=config.scan.eta or 3)


def conclude(run: Selection, started: float) -> SelectResult:
    """After the scan: the race, the final stage and the guard, then `selection.parquet` and the summary."""
    config, budget = run.config, run.ledger.budget
    short = shortlist([row.teacher_id for row in run.scanned.ranked], config.shortlist, config.pinned)
    plan_top_k(run, short)
    winner, trials, race_note = race(run, short)
    if race_note:
        run.progress(race_note)
    short = [t for t in short if t not in run.failed]  # a teacher whose outputs failed has no outcome
    experience = record_experience(run, short, trials)
    race_accuracy = {t.candidate: t.val_accuracy for t in trials if t.candidate == LABELS_ONLY or t.status == "winner"}
    choice = final_stage(run, winner, race_accuracy)
    kept, student, message = choice.kept, choice.student, choice.message
    amount = budget.amount if budget is not None and budget.kind == "flops" else None
    stages = [replace(stage, budget=amount) for stage in run.stages]
    decision = DecisionRow(winner.teacher_id, winner.lam, choice.val_accuracy, student.test_accuracy, kept, message,
                           float(run.ledger.flops), time.perf_counter() - started, **decision_fields(choice))
    selection_path = write_selection([*trials, *stages, decision], run.out_dir / "selection.parquet")
    summary = describe(stages, budget, trials, race_note, message, student)
    return SelectResult(student.student_dir, kept, winner.teacher_id, winner.lam, student.test_accuracy,
                        choice.val_accuracy, message, stages, trials, run.scanned, selection_path, summary,
                        experience, run.mixture, run.mixture_weights)


def decision_fields(choice) -> dict:
    """The decision's evidence, prior and posterior as selection.parquet's decision row holds them."""
    decision = choice.decision
    if decision is None:
        return {"evidence": "the label-only reference won the race"}
    evidence, prior = decision.evidence, decision.prior
    fields = {"evidence": evidence.how, "better": evidence.better, "worse": evidence.worse, "images": evidence.images,
              "posterior_mean": decision.posterior_mean, "posterior_sd": decision.posterior_sd}
    if prior is not None:
        fields.update(prior_mean=prior.mean, prior_sd=prior.sd, prior_tasks=prior.tasks, prior_source=prior.source)
    return fields


def record_experience(run: Selection, short: list[str], trials: list[TrialRow]) -> Path | str | None:
    """Append what the race measured (each raced teacher against the label-only trial) to the experience table:
    the race's own part, so a selection started again rewrites it instead of counting it twice."""
    rows = race_outcomes(run.task, run.scanned.ranked, {t: run.teacher(t)[0] for t in short}, trials)
    if not rows:
        return None
    path = append_experience(rows, experience_folder(run.config.scan, run.out_dir),
                             content_hash(run.task.content_hash, race_name(run, short))[:24])
    run.progress(f"experience: {len(rows)} outcome(s) recorded in {path}")
    return path


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
