"""What a distillation needs before training starts: the student's data, the teacher's outputs, the run's name.

No Ray here: the teacher's outputs come through a function the caller passes (runner actors and the prediction
cache in `api.distill`, a plain forward pass inside a benchmark task).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from .config import DistillConfig, fixed_size
from .costs import conditional_cost
from .errors import SelkdError
from .forward import ForwardPath, at_size, choose_device, softmax
from .models import architecture_input_size
from .records import ProbeSet, Task, TeacherSpec, content_hash
from .training import StudentData
from .zoo import index_teacher

TeacherProbs = Callable[[TeacherSpec, ProbeSet], np.ndarray]


def teacher_spec(folder: str | Path) -> TeacherSpec:
    """The full spec of one teacher folder (content hash, FLOPs); a broken folder is a one-line SelkdError."""
    spec, _, _ = index_teacher(Path(folder))
    if spec.error:
        raise SelkdError(spec.error)
    return spec


def local_teacher_probs(spec: TeacherSpec, images: ProbeSet) -> np.ndarray:
    """The teacher's softmax outputs computed right here (inside a benchmark task, say), on this process's
    device, through the one forward path."""
    logits, _ = ForwardPath.for_teacher(spec, choose_device().device).outputs(images.images)
    return softmax(logits)


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """log p is a logit vector: softmax(log p / tau) = softmax(z / tau) for the z that gave p."""
    return np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0)).astype(np.float32)


def student_images(task: Task) -> ProbeSet:
    """The images the distillation term runs on (labelled train + unlabelled), with a content hash as key."""
    use = np.isin(task.splits, ["train", "unlabelled"])
    images, labels = task.images[use], task.labels[use]
    return ProbeSet(images, labels, task.label_names, content_hash(images, "student-images"))


def student_input_size(task: Task, config: DistillConfig) -> tuple[int, int, int]:
    """(channels, height, width) of the student's input: grey when every image is grey, else RGB; the size
    `config.student_size` names (auto: the task's own when its images share one, else the architecture's)."""
    ragged = task.images.dtype == object
    channels = max(im.shape[0] for im in task.images) if ragged else task.images.shape[1]
    fixed = fixed_size(config.student_size)
    if fixed is None and config.student_size == "auto" and not ragged:
        fixed = tuple(task.images.shape[2:])
    return (int(channels), *(fixed or architecture_input_size(config.student)))


def sized(images: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Images as one uint8 array at the student's input size (as they are when they already are)."""
    if images.dtype != object and tuple(images.shape[1:]) == tuple(size):
        return images
    return at_size(images, size)


def needs_teacher_outputs(teacher: TeacherSpec | None, config: DistillConfig, cost: np.ndarray | None) -> bool:
    """Whether the distillation needs the teacher's outputs on the student images before training: not for labels
    only, nor when augmenting with a known cost matrix (the workers then run the teacher online)."""
    if teacher is None or config.loss == "ce":
        return False
    return not config.augment or (cost is None and config.loss == "ot")


def student_data(task: Task, teacher: TeacherSpec | None, config: DistillConfig, cost: np.ndarray | None,
                 teacher_probs: TeacherProbs = local_teacher_probs) -> StudentData:
    """Arrays for the student loop: train + unlabelled images, the teacher's outputs on them (or the teacher
    itself, to run online when augmenting), and the teacher-to-target cost matrix."""
    pool = student_images(task)
    val_images, val_labels = task.split("val")
    if len(val_labels) == 0:
        raise SelkdError(f"task {task.name}: split: expected a val split for validation")
    size = student_input_size(task, config)
    pool_images = sized(pool.images, size)  # resized once: the labelled rows of the pool are the train split
    pixels = pool_images[pool.labels >= 0].astype(np.float64) / 255.0
    mean = tuple(pixels.mean(axis=(0, 2, 3)).tolist())
    std = tuple(np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3).tolist())
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
    return StudentData(pool_images, pool.labels, logits, cost, sized(val_images, size), val_labels,
                       task.num_classes, size, mean, std, online,
                       teacher.flops_per_sample if online is not None else 0)


def run_name(name: str, config: DistillConfig, teacher: TeacherSpec | None, task: Task,
             cost: np.ndarray | None) -> str:
    """`name` plus a key of everything that decides the run: the same inputs resume the same run. The budgets
    (`max_flops`, `max_seconds`) are limits, not inputs: a run started again with a larger one continues."""
    decides = {k: v for k, v in asdict(config).items() if k not in ("max_flops", "max_seconds")}
    key = content_hash(*(f"{k}={v}" for k, v in sorted(decides.items())),
                       teacher.content_hash if teacher else "labels-only", task.content_hash,
                       np.asarray(cost if cost is not None else [], dtype=np.float64))
    return f"{name}-{key[:12]}"
