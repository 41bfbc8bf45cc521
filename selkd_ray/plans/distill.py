"""The distill job: a student for the task, distilled from one teacher (or from labels alone) on Ray Train."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..address import check_address
from ..config import DistillConfig
from ..errors import SelkdError
from ..io.cache import PredictionCache
from ..io.fs import writable_folder
from ..io.results import metrics_run, write_metrics
from ..models.timm_models import build_model, require_architecture, save_teacher
from ..progress import Progress, Step, quiet
from ..records import Task, TeacherSpec
from ..runs import StopReason, TrainedRun
from ..rows import EpochRow
from ..reports.plots import learning_curve
from ..training.data import StudentData
from ..training.loop import epoch_flops, evaluate
from ..mixture import check_mixture, check_per_image, describe, mixture_name
from ..training.student_data import mixed, run_name, student_data, teacher_spec
from .inputs import as_task
from .teacher_outputs import cached_teacher_probs


@dataclass(frozen=True)
class DistillResult:
    student_dir: Path
    metrics_path: Path
    test_accuracy: float
    val_accuracy: float
    history: list[EpochRow]
    teacher: str  # teacher folder ("A + B" for several at once), or "" for label-only
    best_epoch: int = 0  # the epoch whose weights the student keeps (best validation accuracy)
    stopped: str = ""  # why training ended before its last epoch ('' when it ran them all)
    flops: int = 0  # training FLOPs spent
    curve_path: Path | None = None  # learning-curve plot
    run_name: str = ""  # the Ray Train run (same inputs, same name: a rerun resumes it)
    stop: StopReason = StopReason.NONE  # why training ended before its last epoch, as a reason
    weights: tuple[float, ...] = ()  # several teachers at once: each one's weight, in `teacher`'s order


@dataclass(frozen=True)
class Distillation:
    """One distillation, planned on the driver and ready to train: what the Ray Train run needs, and what the
    plan needs after it to save, measure and report the student."""

    task: Task
    teacher: str  # the teacher folder, or "" for labels only
    spec: TeacherSpec | None
    config: DistillConfig
    data: StudentData
    name: str  # the student's name in the output folder
    out_dir: Path
    mixture: tuple = ()  # several teachers: every member's content hash and weight (the run's key holds them)
    run: str = ""  # the Ray Train run: the name and a key of everything that decides it
    one_epoch_flops: int = 0  # one epoch's training and validation FLOPs (`training.loop.epoch_flops`)

    def train_run(self, run: str):
        """Its Ray Train run, with the training it plans (small students share a run: `distributed.train.packs`)."""
        from ..distributed.train import TrainRun

        planned = self.one_epoch_flops * self.config.epochs
        work = min(planned, self.config.max_flops) if self.config.max_flops else planned
        return TrainRun(self.data, self.config, str(self.out_dir / "runs"), run, work=work)


def distill(task: Task | str | Path, teacher: str | Path | list | tuple | None, out_dir: str | Path,
            config: DistillConfig = DistillConfig(), cost_matrix: np.ndarray | None = None,
            address: str | None = None, name: str | None = None, progress: Progress = quiet,
            cache_dir: str | Path | None = None, weights: tuple[float, ...] | None = None) -> DistillResult:
    """Train a student for the task, distilled from `teacher` (a teacher folder), or from labels alone if None.
    A list of folders distils from all of them at once (`weights`, one per teacher; default equal), each
    teacher's prediction carried onto the task's labels through its own cost matrix (README, "Several teachers").

    The teacher's outputs on the student's images are computed on Ray Data and cached (`cache_dir`, default
    OUT/cache; pass a scan's cache to share it), unless `config.augment` makes it run online in the workers.
    Starting the same distillation again resumes its run from the latest checkpoint."""
    from ..distributed.runtime import connect

    require_architecture(config.student, "--student")  # bad input: one line before Ray starts
    check_per_image(config.per_image_weights, len(teacher_folders(teacher)))
    specs = [teacher_spec(folder) for folder in teacher_folders(teacher)]
    task = as_task(task, progress, address)
    check_address(address)
    writable_folder(Path(out_dir).resolve())
    if cache_dir is not None:  # a --cache that cannot be written: one line before any teacher runs
        writable_folder(cache_dir, "--cache")
    connect(address)
    job = plan_distillation(task, teacher, out_dir, config, cost_matrix, name, progress, cache_dir, weights, specs)
    return train_side_by_side([job], progress)[0]


def teacher_folders(teacher: str | Path | list | tuple | None) -> list:
    """One teacher folder, several (a mixture), or none (labels only), as a list."""
    return list(teacher) if isinstance(teacher, (list, tuple)) else [teacher] if teacher is not None else []


def with_usable_gpus(config: DistillConfig, progress: Progress) -> DistillConfig:
    """The config as this cluster can run it: more GPUs than it has is one line; GPUs torch cannot use there
    (no CUDA on the GPU node) a warning, and CPU workers instead."""
    from ..distributed.runtime import check_gpu_workers

    if config.use_gpu and (warning := check_gpu_workers(config.num_workers)):
        progress(f"warning: {warning}")
        return replace(config, use_gpu=False)
    return config


def plan_distillation(task: Task, teacher: str | Path | list | tuple | None, out_dir: str | Path,
                      config: DistillConfig, cost_matrix: np.ndarray | list | None, name: str | None,
                      progress: Progress, cache_dir: str | Path | None,
                      weights: tuple[float, ...] | None = None,
                      specs: list[TeacherSpec] | None = None, outputs=None) -> Distillation:
    """Check the inputs, fetch (or compute and cache) the teachers' outputs, and refuse a FLOPs cap that does not
    pay for one epoch: everything before Ray Train, on the driver. Several teachers (a list, with a list of
    cost matrices or None) are one mixture. `outputs(spec, images)`: where the teachers' outputs come from
    (default: the cache, filled as needed)."""
    require_architecture(config.student, "--student")
    folders = teacher_folders(teacher)
    specs = specs if specs is not None else [teacher_spec(folder) for folder in folders]
    if len(specs) > 1:
        weights = check_mixture([spec.teacher_id for spec in specs], weights, config.loss)
    if not specs:
        config = replace(config, loss="ce")
    out_dir = writable_folder(Path(out_dir).resolve()).native()
    config = with_usable_gpus(config, progress)
    cache = PredictionCache(cache_dir or out_dir / "cache")
    outputs = outputs or (lambda s, rows: cached_teacher_probs(s, rows, cache, progress))  # noqa: E731
    costs = cost_matrix if isinstance(cost_matrix, list) else [cost_matrix] * max(len(specs), 1)
    members = [student_data(task, spec, config, cost, outputs) for spec, cost in zip(specs, costs)]
    data = (mixed(members, weights) if len(members) > 1 else members[0] if members
            else student_data(task, None, config, None, outputs))
    one_epoch = epoch_flops(data, config)  # counted once: the FLOPs cap's check and the run's plan read it
    if config.max_flops and one_epoch > config.max_flops:
        raise SelkdError(f"--max-flops: {config.max_flops:.3g} does not cover one epoch ({one_epoch:.3g} FLOPs)")
    who = mixture_name([s.teacher_id for s in specs]) if len(specs) > 1 else specs[0].teacher_id if specs else \
        "labels-only"
    name = name or f"student-{who.replace(':', '-')}-{config.loss}-seed{config.seed}"
    mixture = (*(s.content_hash for s in specs[1:]), *(weights or ())) if len(specs) > 1 else ()
    run = run_name(name, config, specs[0] if specs else None, task, data.cost, mixture)
    refuse_other_settings(out_dir / f"{name}.metrics.parquet", run, config)
    if len(specs) > 1:
        progress(f"teachers: {describe(tuple(s.teacher_id for s in specs), weights)}")
    return Distillation(task, " + ".join(str(f) for f in folders), specs[0] if specs else None, config, data, name,
                        out_dir, mixture, run, one_epoch)


def settings_of(config: DistillConfig) -> dict:
    """What a student's metrics table records of how it was distilled (the limits are not settings)."""
    return {k: v for k, v in asdict(config).items() if k not in ("max_flops", "max_seconds")}


def refuse_other_settings(metrics: Path, run: str, config: DistillConfig) -> None:
    """A student of this name distilled otherwise is already in the output: one line naming what differs,
    before any training, rather than replace it, its metrics and its curve without a word."""
    earlier = metrics_run(metrics)
    if earlier is None or earlier[0] == run:
        return
    ours = settings_of(config)
    differs = [f"{key} {earlier[1][key]!r} there, {value!r} here" for key, value in ours.items()
               if earlier[1].get(key, value) != value]
    what = "; ".join(differs) or "its teacher, task or cost matrix differ"
    raise SelkdError(f"{metrics}: a student of this name distilled with other settings is here ({what}); give "
                     "another --out to keep both")


def train_side_by_side(jobs: list[Distillation], progress: Progress = quiet) -> list[DistillResult]:
    """Train the planned students on Ray Train, side by side (each run driven by its own Ray task), then save,
    measure and report each one."""
    from ..distributed.train import fit_students

    started = time.perf_counter()
    runs = [job.run for job in jobs]

    def epochs(index: int, done: int) -> None:  # a line per epoch in a log; under a live bar, the bar moves
        text = f"{jobs[index].name}: epoch {done}/{jobs[index].config.epochs}"
        progress(Step("distill", done, jobs[index].config.epochs, text, text, logged=False))

    states = fit_students([job.train_run(run) for job, run in zip(jobs, runs)], epochs)
    return [finish(job, state, run, started, progress) for job, state, run in zip(jobs, states, runs)]


def finish(job: Distillation, trained: TrainedRun, run: str, started: float, progress: Progress) -> DistillResult:
    """The trained student saved as a teacher folder, its test accuracy, metrics table and learning curve."""
    task, out_dir, name, best = job.task, job.out_dir, job.name, trained.best_epoch
    student, test_accuracy = trained_student(task, job.data, job.config, trained.model)
    student_dir = save_teacher(student, out_dir / name, task.label_names, job.data.input_size, job.data.mean,
                               job.data.std)
    history = [EpochRow(**row, test_accuracy=test_accuracy if row["epoch"] == best else None, best=row["epoch"] == best)
               for row in trained.history]
    metrics_path = write_metrics(history, out_dir / f"{name}.metrics.parquet", run, settings_of(job.config))
    curve = learning_curve(history, out_dir / f"{name}.curve.png", f"{name}: {trained.stopped or 'all epochs'}")
    progress(f"student {name}: test accuracy {test_accuracy:.3f} (best epoch {best + 1} of {len(history)}; "
             f"{trained.stopped or 'ran every epoch'}; {time.perf_counter() - started:.0f} s)")
    return DistillResult(student_dir, metrics_path, test_accuracy, trained.best_val, history, job.teacher, best,
                         trained.stopped, trained.flops, curve, run, trained.stop, job.data.teacher_weights)


def trained_student(task: Task, data: StudentData, config: DistillConfig, weights: dict):
    """(the student with these weights, its accuracy on the task's test split)."""
    student = build_model(config.student, task.num_classes, data.input_size[0])
    student.load_state_dict(weights)
    test = task.indices("test")
    return student, evaluate(student, data, task.subset(test), task.labels[test])
