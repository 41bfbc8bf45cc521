"""What a distillation needs before training starts: the student's data, the teacher's outputs, the run's name.

No Ray here: the teacher's outputs come through a function the caller passes (the prediction cache, filled here
or on Ray Data, in `plans/teacher_outputs.py`; a plain forward pass inside a benchmark task).
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import DistillConfig, fixed_size
from ..scoring.costs import conditional_cost
from ..errors import SelkdError
from ..models.forward import ForwardPath, choose_device, softmax
from ..models.timm_models import architecture_input_size
from ..progress import Progress, Step, quiet
from ..records import ProbeSet, Task, TeacherSpec, content_hash
from .data import ImagesAtSize, StudentData, channel_stats
from ..zoo.index import index_teacher

TeacherProbs = Callable[[TeacherSpec, ProbeSet], np.ndarray]
ROWS_PER_BATCH = 256  # student images a local forward pass decodes and runs at once


def teacher_spec(folder: str | Path) -> TeacherSpec:
    """The full spec of one teacher folder (content hash, FLOPs); a broken folder is a one-line SelkdError."""
    spec, _, _ = index_teacher(Path(folder))
    if spec.error:
        raise SelkdError(spec.error)
    return spec


def probs_on_rows(forward: ForwardPath, spec: TeacherSpec, images) -> np.ndarray:
    """The teacher's softmax outputs on one batch of the student's images; non-finite outputs are one line."""
    logits, _ = forward.outputs(images)
    if not np.isfinite(logits).all():
        raise SelkdError(f"{spec.path}: teacher gives non-finite outputs on the student's images")
    return softmax(logits)


def local_teacher_probs(spec: TeacherSpec, images: ProbeSet, progress: Progress = quiet) -> np.ndarray:
    """The teacher's softmax outputs (n, C_T) computed right here (inside a benchmark task, or for a teacher
    whose outputs cost less than an actor pool's start), on this process's device, through the one forward path,
    a batch of rows at a time (each batch decoded as it is run)."""
    forward = ForwardPath.for_teacher(spec, choose_device().device)
    probs = np.zeros((len(images), spec.num_classes), np.float32)
    for start in range(0, len(images), ROWS_PER_BATCH):
        index = np.arange(start, min(start + ROWS_PER_BATCH, len(images)))
        probs[index] = probs_on_rows(forward, spec, images.images[index])
        text = f"teacher outputs: {spec.teacher_id} on {index[-1] + 1}/{len(images)} student images"
        progress(Step("outputs", int(index[-1] + 1), len(images), text, text, logged=index[-1] + 1 == len(images)))
    return probs


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """log p is a logit vector: softmax(log p / tau) = softmax(z / tau) for the z that gave p."""
    return np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0)).astype(np.float32)


def refit_task(task: Task) -> Task:
    """The task as a refit trains on it: its validation images labelled training images too (`--refit`)."""
    return replace(task, splits=np.where(np.asarray(task.splits).astype(str) == "val", "train",
                                         np.asarray(task.splits).astype(str)))


def student_images(task: Task) -> ProbeSet:
    """The images the distillation term runs on (labelled train + unlabelled), as rows of the task (decoded
    only when a forward pass or the student takes them), with a key from their content hashes."""
    rows = task.indices("train", "unlabelled")
    return ProbeSet(task.subset(rows), task.labels[rows], task.label_names, task.rows_hash(rows, "student-images"))


def student_input_size(task: Task, config: DistillConfig) -> tuple[int, int, int]:
    """(channels, height, width) of the student's input: grey when every image is grey, else RGB; the size
    `config.student_size` names (auto: the task's own when its images share one, else the architecture's)."""
    shapes = task.shapes
    fixed = fixed_size(config.student_size)
    if fixed is None and config.student_size == "auto" and len(np.unique(shapes, axis=0)) == 1:
        fixed = tuple(int(v) for v in shapes[0, 1:])
    return (int(shapes[:, 0].max()), *(fixed or architecture_input_size(config.student)))


STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}  # a selection asks once per candidate


def pixel_stats(task: Task, rows: np.ndarray, size: tuple[int, int, int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The student's normalisation: per-channel mean and std of these rows at its input size, computed a
    chunk at a time once per (images, size) in this process."""
    key = task.rows_hash(rows, size)
    if key not in STATS:
        STATS.clear()  # one task at a time: the memory of a long-lived process stays flat
        STATS[key] = channel_stats(ImagesAtSize(task.subset(rows), size))
    return STATS[key]


def needs_teacher_outputs(teacher: TeacherSpec | None, config: DistillConfig, cost: np.ndarray | None) -> bool:
    """Whether the distillation needs the teacher's outputs on the student images before training: not for labels
    only, nor when augmenting with a known cost matrix (the workers then run the teacher online)."""
    if teacher is None or config.loss == "ce":
        return False
    return not config.augment or (cost is None and config.loss == "ot")


def student_data(task: Task, teacher: TeacherSpec | None, config: DistillConfig, cost: np.ndarray | None,
                 teacher_probs: TeacherProbs = local_teacher_probs) -> StudentData:
    """What the student loop needs: train + unlabelled images and the validation images at the student's size
    (references, decoded where the student trains), the teacher's outputs on them (or the teacher itself, to
    run online when augmenting), and the teacher-to-target cost matrix (fitted on every labelled image of the
    pool when none is given). With `config.refit` the validation images train too and no split validates."""
    task = refit_task(task) if config.refit else task
    pool = student_images(task)
    val = task.indices("val")
    if len(val) == 0 and not config.refit:
        raise SelkdError(f"task {task.name}: split: expected a val split for validation")
    size = student_input_size(task, config)
    mean, std = pixel_stats(task, pool.images.rows[pool.labels >= 0], size)
    logits, online = None, None
    if teacher is not None and config.loss != "ce":
        if config.loss == "kl" and teacher.label_names != task.label_names:
            raise SelkdError(f"--loss kl: teacher {teacher.teacher_id} labels {list(teacher.label_names)} differ "
                             f"from the task's {list(task.label_names)}; use --loss ot across label spaces")
        probs = teacher_probs(teacher, pool) if needs_teacher_outputs(teacher, config, cost) else None
        if cost is None and config.loss == "ot":
            labelled = pool.labels >= 0
            cost = conditional_cost(probs[labelled].astype(np.float64), pool.labels[labelled], task.num_classes)
        if config.augment:
            online = teacher  # the workers run it on every augmented batch
        else:
            logits = logits_from_probs(probs)
    return StudentData(ImagesAtSize(pool.images, size), pool.labels, logits, cost, ImagesAtSize(task.subset(val), size),
                       task.labels[val], task.num_classes, size, mean, std, online,
                       teacher.flops_per_sample if online is not None else 0)


def mixed(members: list[StudentData], weights: tuple[float, ...]) -> StudentData:
    """One student's data from several teachers' (the same task, images and settings): their outputs side by
    side, their cost matrices stacked, each one's class count and weight kept for the mixture's loss."""
    first = members[0]
    if any(m.teacher is not None for m in members):
        raise SelkdError("--augment: a mixture of teachers needs their outputs cached; augmenting runs one teacher "
                         "online, so use several teachers without --augment")
    return replace(first, teacher_logits=np.concatenate([m.teacher_logits for m in members], axis=1),
                   cost=np.concatenate([m.cost for m in members], axis=0),
                   teacher_parts=tuple(m.cost.shape[0] for m in members), teacher_weights=tuple(weights))


def run_name(name: str, config: DistillConfig, teacher: TeacherSpec | None, task: Task,
             cost: np.ndarray | None, mixture: tuple = ()) -> str:
    """`name` plus a key of everything that decides the run (`mixture`: the other teachers' hashes and every
    weight, for several teachers at once): the same inputs resume the same run. The budgets
    (`max_flops`, `max_seconds`) are limits, not inputs: a run started again with a larger one continues."""
    decides = {k: v for k, v in asdict(config).items() if k not in ("max_flops", "max_seconds")}
    if not mixture:  # per-image weights decide nothing with one teacher: its run is the same run
        decides.pop("per_image_weights")
    key = content_hash(*(f"{k}={v}" for k, v in sorted(decides.items())),
                       teacher.content_hash if teacher else "labels-only", task.content_hash,
                       np.asarray(cost if cost is not None else [], dtype=np.float64), *map(str, mixture))
    return f"{name}-{key[:12]}"
