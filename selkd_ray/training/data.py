"""A student's data: the task's rows at the student's input size, held as references and decoded where the
student trains (`ready`), with the teacher's outputs and the cost matrix beside them."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..models.forward import at_size
from ..records import Preprocessing, TaskRows, TeacherSpec


@dataclass(frozen=True)
class ImagesAtSize:
    """Rows of a task at the student's input size, decoded and resized where the student trains (`ready`), so
    the process that plans a distillation never holds the student's images."""

    rows: TaskRows
    size: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.rows)

    def part(self, start: int, stop: int) -> "ImagesAtSize":
        return ImagesAtSize(TaskRows(self.rows.images, self.rows.rows[start:stop]), self.size)

    def load(self) -> np.ndarray:
        """uint8 (n, C, H, W) at the student's size (taken as they are when they already are)."""
        if not len(self):  # a refit's validation split: no images
            return np.zeros((0, *self.size), np.uint8)
        if len(self) and bool(np.all(self.rows.shapes == np.asarray(self.size))):
            return self.rows[:]  # already at the student's size: decoded, not resized
        return at_size(self.rows, self.size)


def channel_stats(images: ImagesAtSize, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the images at the student's size, a chunk at a time (never all decoded)."""
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(images), chunk):
        pixels = images.part(start, start + chunk).load().astype(np.float64) / 255.0
        total, squares = total + pixels.sum(axis=(0, 2, 3)), squares + np.square(pixels).sum(axis=(0, 2, 3))
        count += pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
    mean = np.asarray(total) / max(count, 1)
    std = np.sqrt(np.maximum(np.asarray(squares) / max(count, 1) - mean ** 2, 0.0))
    return tuple(mean.tolist()), tuple(np.maximum(std, 1e-3).tolist())


@dataclass
class StudentData:
    """Everything the student loop needs; the images as references until `ready` decodes them where the
    student trains (it travels to the workers once, small)."""

    images: np.ndarray | ImagesAtSize  # uint8 (n, C, H, W) once ready: labelled train + unlabelled images
    labels: np.ndarray  # (n,), -1 where unlabelled
    teacher_logits: np.ndarray | None  # (n, C_T), cached teacher outputs; None for label-only or online
    cost: np.ndarray | None  # (C_T, C_S) for the OT loss
    val_images: np.ndarray | ImagesAtSize
    val_labels: np.ndarray
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    teacher: TeacherSpec | None = None  # run online inside the workers (with augmentation) when set
    teacher_flops: int = 0  # the teacher's forward FLOPs per sample, for the budget when it runs online
    # several teachers at once: each one's class count in `teacher_logits` and `cost`, and its weight ((): one)
    teacher_parts: tuple[int, ...] = ()
    teacher_weights: tuple[float, ...] = ()

    @property
    def preprocessing(self) -> Preprocessing:
        """The student's input: the task's images at their own size (the whole image), normalised."""
        return Preprocessing(self.input_size, self.mean, self.std)


def ready(data: StudentData) -> StudentData:
    """The data with its images decoded at the student's size: called where the student trains."""
    if isinstance(data.images, np.ndarray) and isinstance(data.val_images, np.ndarray):
        return data
    load = lambda images: images if isinstance(images, np.ndarray) else images.load()  # noqa: E731
    return replace(data, images=load(data.images), val_images=load(data.val_images))
