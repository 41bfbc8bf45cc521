"""The Python API: index a zoo, scan it against a task, distill a teacher into a student.

Each function connects to Ray only when it needs it (reusing a running Ray, e.g. inside a Ray job).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .budget import parse_budget, probe_sizes
from .config import LOSSES, DistillConfig, ScanConfig
from .costs import conditional_cost
from .errors import SelkdError
from .io.catalogue import read_catalogue, write_catalogue
from .io.embeddings import EmbeddingCache
from .io.fs import Location
from .io.lock import ScanLock
from .io.results import read_scores, write_metrics, write_scores
from .io.tasks import load_task
from .models import build_model, load_teacher, predict, read_teacher_config, save_teacher
from .records import Task, TeacherSpec
from .scanning import rank_rows, run_plan
from .scores import SCORERS
from .training import StudentData, evaluate, fit_plain
from .zoo import index_zoo as index_folders

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """The default progress sink: say nothing."""


@dataclass(frozen=True)
class ScanResult:
    scores_path: Path | str  # a Path on the local disk, else the filesystem URI
    catalogue_path: Path | str
    rows: list[dict]  # ranked: best teacher first, failed teachers last
    ran: int  # teachers run to the last round in this scan
    cached: int  # teachers answered from the cache in the last round
    failed: int
    dropped: int = 0  # dropped by successive halving
    skipped: int = 0  # not run (or not finished) because the budget was spent
    spent: str = ""  # the ledger in words: spent against budget
    flops: int = 0  # forward FLOPs this scan spent
    seconds: float = 0.0

    @property
    def ranked(self) -> list[dict]:
        return [row for row in self.rows if row["rank"] is not None]


@dataclass(frozen=True)
class DistillResult:
    student_dir: Path
    metrics_path: Path
    test_accuracy: float
    val_accuracy: float
    history: list[dict]
    teacher: str  # teacher folder, or "" for label-only


def index_zoo(zoo_dir: str | Path, catalogue_path: str | Path | Location | None = None
              ) -> tuple[list[TeacherSpec], Path | str]:
    """Index `zoo_dir` into a Parquet catalogue (default: ZOO_DIR/catalogue.parquet), incrementally."""
    zoo_dir = Path(zoo_dir)
    catalogue = Location(catalogue_path or zoo_dir / "catalogue.parquet")
    previous = read_catalogue(catalogue) if catalogue.is_file() else None
    entries = index_folders(zoo_dir, previous)
    return [spec for spec, _, _ in entries], write_catalogue(entries, catalogue)


def as_task(task: Task | str | Path) -> Task:
    return task if isinstance(task, Task) else load_task(task)


def scan(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path, config: ScanConfig = ScanConfig(),
         address: str | None = None, progress: Progress = quiet) -> ScanResult:
    """Rank every teacher of the zoo for the task, within the budget; cached predictions are reused, failures
    recorded. `progress` receives ScanEvent objects (str() gives a log line)."""
    for name in config.scorers:
        SCORERS.get(name)
    parse_budget(config.budget)
    probe_sizes(config.probe_per_class, config.min_probe, config.eta)
    out_dir = Location(out_dir)  # a local folder or a pyarrow filesystem URI
    with ScanLock(out_dir):
        specs, catalogue_path = index_zoo(zoo_dir, out_dir / "catalogue.parquet")
        task = as_task(task)
        pool = None

        def run_teachers(pending, probe, admit, scoring):
            nonlocal pool
            if pool is None:
                from .distributed.runtime import connect
                from .distributed.scan import RunnerPool

                connect(address)
                pool = RunnerPool(config.max_actors, len(pending))
            return pool.run(pending, probe, admit, scoring)

        scores_location = out_dir / "scores.parquet"
        previous = read_scores(scores_location) if scores_location.is_file() else []
        try:
            rows, ledger = run_plan(specs, task, out_dir, config, progress, run_teachers,
                                    lambda: label_embeddings(specs, task, out_dir / "cache"), previous)
        finally:
            if pool is not None:
                pool.close()
        ranked = rank_rows(rows)
        scores_path = write_scores(ranked, list(config.scorers), scores_location)
    count = lambda *statuses: sum(row["status"] in statuses for row in ranked)  # noqa: E731
    return ScanResult(scores_path, catalogue_path, ranked, count("scored"), count("cached"), count("failed"),
                      count("dropped"), count("skipped", "unfinished"), ledger.describe(), ledger.flops,
                      ledger.seconds)


def label_embeddings(specs: list[TeacherSpec], task: Task, cache_dir: Location) -> dict[str, np.ndarray]:
    """Unit text embeddings of every label name in the zoo and the task, cached on disk by name."""
    from .text import TEXT_MODEL, embed_label_names

    names = sorted({name for spec in specs for name in spec.label_names} | set(task.label_names))
    return EmbeddingCache(cache_dir, TEXT_MODEL).lookup(names, embed_label_names)


def cost_from_scan(scores_path: str | Path, teacher_id: str, num_target_classes: int) -> np.ndarray | None:
    for row in read_scores(scores_path):
        if row["teacher_id"] == teacher_id and row["cost_matrix"]:
            return np.asarray(row["cost_matrix"]).reshape(row["num_teacher_classes"], num_target_classes)
    return None


def distill(task: Task | str | Path, teacher: str | Path | None, out_dir: str | Path,
            config: DistillConfig = DistillConfig(), cost_matrix: np.ndarray | None = None,
            address: str | None = None, name: str | None = None, progress: Progress = quiet) -> DistillResult:
    """Train a student for the task, distilled from `teacher` (a teacher folder), or from labels alone if None."""
    from .distributed.runtime import connect
    from .distributed.train import fit_student

    if config.loss not in LOSSES:
        raise SelkdError(f"--loss: '{config.loss}' is not one of {', '.join(LOSSES)}")
    task = as_task(task)
    if teacher is None:
        config = replace(config, loss="ce")
    data = student_data(task, teacher, config, cost_matrix)
    connect(address)
    out_dir = Path(out_dir).resolve()
    name = name or f"student-{Path(teacher).name if teacher else 'labels-only'}-{config.loss}-seed{config.seed}"
    started = time.perf_counter()
    state = fit_student(data, config, str(out_dir / "runs"), f"{name}-{int(time.time() * 1000)}")
    student, test_accuracy = trained_student(task, data, config, state["model"])
    student_dir = save_teacher(student, out_dir / name, task.label_names, data.input_size, data.mean, data.std)
    history = [{**row, "test_accuracy": test_accuracy if i == len(state["history"]) - 1 else None}
               for i, row in enumerate(state["history"])]
    metrics_path = write_metrics(history, out_dir / f"{name}.metrics.parquet")
    progress(f"student {name}: test accuracy {test_accuracy:.3f} ({time.perf_counter() - started:.0f} s)")
    return DistillResult(student_dir, metrics_path, test_accuracy, history[-1]["val_accuracy"], history,
                         str(teacher or ""))


def trained_student(task: Task, data: StudentData, config: DistillConfig, weights: dict):
    """(the student with these weights, its accuracy on the task's test split)."""
    student = build_model(config.student, task.num_classes, data.input_size[0])
    student.load_state_dict(weights)
    return student, evaluate(student, data, *task.split("test"))


def student_accuracy_here(task: Task, teacher: str | Path | None, config: DistillConfig,
                          cost_matrix: np.ndarray | None = None) -> dict:
    """Train one student in this process with the plain loop (no Ray Train): a benchmark's ground truth.

    Returns its test accuracy and per-epoch history; `teacher` None means labels only.
    """
    if teacher is None:
        config = replace(config, loss="ce")
    data = student_data(task, teacher, config, cost_matrix)
    state = fit_plain(data, config)
    return {"test_accuracy": trained_student(task, data, config, state["model"])[1], "history": state["history"]}


def student_data(task: Task, teacher: str | Path | None, config: DistillConfig, cost: np.ndarray | None):
    """Arrays for the student loop: train + unlabelled images, teacher logits on them, the cost matrix."""
    use = np.isin(task.splits, ["train", "unlabelled"])
    images, labels = task.images[use], task.labels[use]
    val_images, val_labels = task.split("val")
    if len(val_labels) == 0:
        raise SelkdError(f"task {task.name}: split: expected a val split for validation")
    pixels = task.images[task.splits == "train"].astype(np.float64) / 255.0
    mean = tuple(pixels.mean(axis=(0, 2, 3)).tolist())
    std = tuple(np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3).tolist())
    logits = None
    if teacher is not None and config.loss != "ce":
        spec = teacher_spec(Path(teacher))
        if config.loss == "kl" and spec.label_names != task.label_names:
            raise SelkdError(f"--loss kl: teacher {spec.teacher_id} labels {list(spec.label_names)} differ from the "
                             f"task's {list(task.label_names)}; use --loss ot across label spaces")
        logits, _ = predict(load_teacher(spec), images, spec.input_size, spec.mean, spec.std)
        if cost is None:
            labelled = labels >= 0
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            cost = conditional_cost(probs[labelled], labels[labelled], task.num_classes)
    return StudentData(images, labels, logits, cost, val_images, val_labels, task.num_classes,
                       tuple(task.images.shape[1:]), mean, std)


def teacher_spec(folder: Path) -> TeacherSpec:
    """A spec for a single teacher folder (no hashing or FLOPs needed to distill from it)."""
    config = read_teacher_config(folder)
    return TeacherSpec(teacher_id=folder.name, path=str(folder), architecture=config["architecture"],
                       content_hash="", label_names=config["label_names"], input_size=config["input_size"],
                       mean=config["mean"], std=config["std"])
