"""The distill job: a student for the task, distilled from one teacher (or from labels alone) on Ray Train."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..address import check_address
from ..config import DistillConfig
from ..errors import SelkdError
from ..io.cache import PredictionCache
from ..io.fs import writable_folder
from ..io.results import write_metrics
from ..models.timm_models import build_model, require_architecture, save_teacher
from ..progress import Progress, Step, quiet
from ..records import Task
from ..reports.plots import learning_curve
from ..training.loop import StudentData, epoch_flops, evaluate
from ..training.student_data import run_name, student_data, teacher_spec
from .inputs import as_task
from .teacher_outputs import cached_teacher_probs


@dataclass(frozen=True)
class DistillResult:
    student_dir: Path
    metrics_path: Path
    test_accuracy: float
    val_accuracy: float
    history: list[dict]
    teacher: str  # teacher folder, or "" for label-only
    best_epoch: int = 0  # the epoch whose weights the student keeps (best validation accuracy)
    stopped: str = ""  # why training ended before its last epoch ('' when it ran them all)
    flops: int = 0  # training FLOPs spent
    curve_path: Path | None = None  # learning-curve plot
    run_name: str = ""  # the Ray Train run (same inputs, same name: a rerun resumes it)


def distill(task: Task | str | Path, teacher: str | Path | None, out_dir: str | Path,
            config: DistillConfig = DistillConfig(), cost_matrix: np.ndarray | None = None,
            address: str | None = None, name: str | None = None, progress: Progress = quiet,
            cache_dir: str | Path | None = None) -> DistillResult:
    """Train a student for the task, distilled from `teacher` (a teacher folder), or from labels alone if None.

    The teacher's outputs on the student's images are computed by a runner actor and cached (`cache_dir`,
    default OUT/cache; pass a scan's cache to share it), unless `config.augment` makes it run online in the
    workers. Starting the same distillation again resumes its run from the latest checkpoint."""
    from ..distributed.runtime import check_gpu_workers, connect
    from ..distributed.train import fit_student

    task = as_task(task, progress, address)
    check_address(address)
    require_architecture(config.student, "--student")
    spec = teacher_spec(teacher) if teacher is not None else None
    if spec is None:
        config = replace(config, loss="ce")
    out_dir = writable_folder(Path(out_dir).resolve()).native()
    connect(address)
    if config.use_gpu and (warning := check_gpu_workers(config.num_workers)):
        progress(f"warning: {warning}")
        config = replace(config, use_gpu=False)
    cache = PredictionCache(cache_dir or out_dir / "cache")
    data = student_data(task, spec, config, cost_matrix, lambda s, images: cached_teacher_probs(s, images, cache, progress))
    if config.max_flops:
        needed = epoch_flops(data, config)
        if needed > config.max_flops:
            raise SelkdError(f"--max-flops: {config.max_flops:.3g} does not cover one epoch ({needed:.3g} FLOPs)")
    name = name or f"student-{spec.teacher_id if spec else 'labels-only'}-{config.loss}-seed{config.seed}"
    run = run_name(name, config, spec, task, data.cost)
    started = time.perf_counter()
    def epochs(done: int) -> None:  # a line per epoch in a log; under a live bar, the bar moves
        text = f"{name}: epoch {done}/{config.epochs}"
        progress(Step("distill", done, config.epochs, text, text, logged=False))
    state = fit_student(data, config, str(out_dir / "runs"), run, on_epoch=epochs)
    student, test_accuracy = trained_student(task, data, config, state["model"])
    student_dir = save_teacher(student, out_dir / name, task.label_names, data.input_size, data.mean, data.std)
    history = [{**row, "test_accuracy": test_accuracy if row["epoch"] == state["best_epoch"] else None,
                "best": row["epoch"] == state["best_epoch"]} for row in state["history"]]
    metrics_path = write_metrics(history, out_dir / f"{name}.metrics.parquet")
    curve = learning_curve(history, out_dir / f"{name}.curve.png", f"{name}: {state['stopped'] or 'all epochs'}")
    progress(f"student {name}: test accuracy {test_accuracy:.3f} (best epoch {state['best_epoch'] + 1} of "
             f"{len(history)}; {state['stopped'] or 'ran every epoch'}; {time.perf_counter() - started:.0f} s)")
    return DistillResult(student_dir, metrics_path, test_accuracy, state["best_val"], history, str(teacher or ""),
                         state["best_epoch"], state["stopped"], int(state["flops"]), curve, run)


def trained_student(task: Task, data: StudentData, config: DistillConfig, weights: dict):
    """(the student with these weights, its accuracy on the task's test split)."""
    student = build_model(config.student, task.num_classes, data.input_size[0])
    student.load_state_dict(weights)
    test = task.indices("test")
    return student, evaluate(student, data, task.subset(test), task.labels[test])
