"""Shared by the benchmark scripts: the machine in words, synthetic zoos of tiny timm teachers, timing."""
from __future__ import annotations

import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from selkd_ray.collector import lean_collector

lean_collector()  # before torch: a benchmark's driver is one of our processes, as the command's is (collector.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ray import cloudpickle

from selkd_ray.config import DistillConfig
from selkd_ray.demo.data import DIGIT_NAMES, MNIST_MEAN, MNIST_STD
from selkd_ray.models.timm_models import WEIGHTS_FILE, build_model, save_teacher
from selkd_ray.plans.distill import trained_student
from selkd_ray.records import Task
from selkd_ray.training.loop import fit_plain
from selkd_ray.mixture import check_weights
from selkd_ray.training.student_data import mixed, student_data, teacher_spec

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import a module of this folder by name

TINY_ARCHITECTURES = ("test_efficientnet", "test_resnet", "test_byobnet")


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    model = platform.processor()
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def synthetic_zoo(zoo_dir: Path, count: int, architectures: tuple[str, ...] = TINY_ARCHITECTURES,
                  num_classes: int = 10, input_size: tuple[int, int, int] = (1, 28, 28)) -> list[Path]:
    """`count` randomly initialised teachers (distinct weights, so distinct hashes), saved as timm folders.

    Good for timing and memory figures, not for ranking quality. Existing folders are kept."""
    folders = []
    names = tuple(DIGIT_NAMES[i % 10] + ("" if i < 10 else f"-{i}") for i in range(num_classes))
    for index in range(count):
        folder = zoo_dir / f"tiny-{index:04d}"
        folders.append(folder)
        if (folder / WEIGHTS_FILE).is_file():
            continue
        torch.manual_seed(index)
        model = build_model(architectures[index % len(architectures)], num_classes, input_size[0]).eval()
        mean, std = (MNIST_MEAN, MNIST_STD) if input_size[0] == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        save_teacher(model, folder, names, input_size, mean, std)
    return folders


def linked_zoo(zoo_dir: Path, folders: list[Path]) -> Path:
    """A zoo folder of symlinks to `folders`: subsets of one big zoo without copying weights."""
    zoo_dir.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        link = zoo_dir / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    return zoo_dir


@contextmanager
def stopwatch(into: dict, key: str):
    started = time.perf_counter()
    yield
    into[key] = time.perf_counter() - started


def student_accuracy_here(task: Task, teacher: str | Path | list | None, config: DistillConfig,
                          cost_matrix: np.ndarray | None = None, weights: tuple[float, ...] | None = None) -> dict:
    """Train one student in this process with the plain loop (no Ray Train): a benchmark's ground truth.

    Returns its test accuracy and per-epoch history; `teacher` None means labels only, a list of folders a
    mixture of those teachers with `weights`.
    """
    if isinstance(teacher, (list, tuple)):
        members = [student_data(task, teacher_spec(folder), config, None) for folder in teacher]
        data = mixed(members, check_weights(tuple(weights) if weights is not None else None, len(members)))
        trained = fit_plain(data, config)
        return {"test_accuracy": trained_student(task, data, config, trained.model)[1],
                "history": list(trained.history)}
    spec = teacher_spec(teacher) if teacher is not None else None
    if spec is None:
        config = replace(config, loss="ce")
    data = student_data(task, spec, config, cost_matrix)
    trained = fit_plain(data, config)
    return {"test_accuracy": trained_student(task, data, config, trained.model)[1], "history": list(trained.history)}
