"""The Python API: index a zoo, scan it against a task, distill a teacher into a student.

Each function connects to Ray only when it needs it (reusing a running Ray, e.g. inside a Ray job).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .address import check_address
from .budget import parse_budget, probe_sizes
from .config import DistillConfig, ScanConfig
from .distillation import run_name, student_data, teacher_spec
from .errors import SelkdError
from .io.cache import PredictionCache, prediction_key
from .io.catalogue import read_catalogue, write_catalogue
from .io.embeddings import EmbeddingCache
from .io.fs import Location, writable_folder
from .io.history import append_history, read_history
from .io.lock import ScanLock
from .io.results import read_scores, read_selection, write_metrics, write_scores
from .io.tasks import load_task
from .models import build_model, require_architecture, save_teacher
from .probe import make_probe
from .progress import Progress, Step, quiet
from .records import Predictions, ProbeSet, Task, TeacherSpec
from .report import learning_curve
from .scanning import rank_rows, run_plan
from .scores import SCORERS
from .training import StudentData, epoch_flops, evaluate, fit_plain
from .zoo import index_here, index_zoo as index_folders, require_zoo

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
    round_flops: tuple[int, ...] = ()  # cumulative FLOPs at the end of each halving round
    history_path: Path | str | None = None  # history.parquet: one row per scan of this output
    runners: tuple[dict, ...] = ()  # where each runner actor ran (node, resources, GPUs, device), when any ran
    recomputed: tuple[str, ...] = ()  # cache entries found bad (unreadable, another key's, failed checksum): "FILE (why)"

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
    best_epoch: int = 0  # the epoch whose weights the student keeps (best validation accuracy)
    stopped: str = ""  # why training ended before its last epoch ('' when it ran them all)
    flops: int = 0  # training FLOPs spent
    curve_path: Path | None = None  # learning-curve plot
    run_name: str = ""  # the Ray Train run (same inputs, same name: a rerun resumes it)


PARALLEL_INDEX_FROM = 16  # new or changed teachers from which indexing runs as Ray tasks rather than here


def index_zoo(zoo_dir: str | Path, catalogue_path: str | Path | Location | None = None,
              address: str | None = None, progress: Progress = quiet) -> tuple[list[TeacherSpec], Path | str]:
    """Index `zoo_dir` into a Parquet catalogue (default: ZOO_DIR/catalogue.parquet), incrementally.

    A new catalogue elsewhere (a scan's output) starts from the zoo's own catalogue when there is one, so a
    zoo indexed once (`selkd zoo index`) is not hashed and described again by every new scan. New or changed
    teachers are indexed by Ray tasks across the cluster (at `address`, else the running or an embedded Ray)
    when there are many of them; a few are indexed here, where a Ray start or task round trip costs more."""
    check_address(address)
    zoo_dir = Path(zoo_dir)
    own = Location(zoo_dir / "catalogue.parquet")
    catalogue = Location(catalogue_path or own)
    seed = catalogue if catalogue.is_file() else own if own.is_file() else None
    previous = read_catalogue(seed) if seed is not None else None
    require_zoo(zoo_dir)
    entries = index_folders(zoo_dir, previous, parallel_indexer(address, progress))
    return [spec for spec, _, _ in entries], write_catalogue(entries, catalogue)


def parallel_indexer(address: str | None, progress: Progress):
    """Index many teachers as Ray tasks (connecting to Ray as every command does), few of them here."""
    def index_many(folders):
        if len(folders) < PARALLEL_INDEX_FROM:
            return index_here(folders)
        from .distributed.indexing import index_in_tasks
        from .distributed.runtime import connect

        connect(address)
        return index_in_tasks(folders, lambda done, total: progress(Step(
            "zoo", done, total, f"[zoo] indexed {done}/{total} new or changed teachers", f"{done}/{total}", False)))
    return index_many


def as_task(task: Task | str | Path, progress: Progress = quiet, address: str | None = None) -> Task:
    """The task, read from its files when given a path (a large one surveyed on Ray Data, at `address` or an
    embedded Ray); each image left out as unreadable is said once, here."""
    from .distributed.task_data import surveyor

    if isinstance(task, Task):
        return task
    task = load_task(task, surveyor(address))
    for line in task.skipped:
        progress(f"warning: {line}")
    return task


def scan(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path, config: ScanConfig = ScanConfig(),
         address: str | None = None, progress: Progress = quiet, runners=None) -> ScanResult:
    """Rank every teacher of the zoo for the task, within the budget; cached predictions are reused, failures
    recorded. `progress` receives ScanEvent objects (str() gives a log line).

    `runners`: a `distributed.scan.RunnerPool` to use and leave running, for a driver that scans many tasks
    (a runner actor takes seconds to start); by default each scan starts its own and stops it at the end."""
    for name in config.scorers:
        SCORERS.get(name, "--scorer")
    parse_budget(config.budget)
    probe_sizes(config.probe_per_class, config.min_probe, config.eta)
    check_address(address)
    task = as_task(task, progress, address)  # a bad task, zoo or output table: one line before anything is written
    require_zoo(Path(zoo_dir))
    out_dir = writable_folder(out_dir)  # a local folder or a pyarrow filesystem URI
    check_outputs(out_dir)
    with ScanLock(out_dir):
        scores_location = out_dir / "scores.parquet"
        previous = read_scores(scores_location) if scores_location.is_file() else []
        specs, catalogue_path = index_zoo(zoo_dir, out_dir / "catalogue.parquet", address, progress)
        cache = PredictionCache(out_dir / "cache")
        check_budget_floor(specs, task, config, cache, previous)
        pool, placements = runners, []

        def run_teachers(pending, probe, admit, scoring):
            nonlocal pool
            if pool is None:
                from .distributed.runtime import connect
                from .distributed.scan import RunnerPool

                connect(address)
                pool = RunnerPool(config.max_actors, len(pending))
                if sizing := pool.sizing(config.max_actors, len(pending)):
                    progress(f"note: {sizing}")
            if not placements:
                placements.extend(pool.placements())
                for warning in sorted({p["warning"] for p in placements if p["warning"]}):
                    progress(f"warning: runner actors: {warning}")
            return pool.run(pending, probe, admit, scoring)

        try:
            rows, ledger = run_plan(specs, task, out_dir, config, progress, run_teachers,
                                    lambda: label_embeddings(specs, task, out_dir / "cache"), previous, cache)
        finally:
            if pool is not None and pool is not runners:
                pool.close()
        ranked = rank_rows(rows)
        scores_path = write_scores(ranked, list(config.scorers), scores_location)
        count = lambda *statuses: sum(row["status"] in statuses for row in ranked)  # noqa: E731
        result = ScanResult(scores_path, catalogue_path, ranked, count("scored"), count("cached"), count("failed"),
                            count("dropped"), count("skipped", "unfinished"), ledger.describe(), ledger.flops,
                            ledger.seconds, tuple(ledger.round_flops))
        known = {row["content_hash"] for row in previous}
        new = sum(spec.content_hash not in known for spec in specs)
        history = append_history(history_row(result, task, len(specs), new, config, ledger.budget),
                                 out_dir / "history.parquet")
    return replace(result, history_path=history, runners=tuple(placements), recomputed=tuple(cache.rejected))


def check_outputs(out_dir: Location) -> None:
    """Read every table of an output folder that a command will read or append to (scores, history, catalogue,
    selection): a bad one stops the command in one line before it takes the folder's lock or does any work."""
    for name, read in (("scores.parquet", read_scores), ("history.parquet", read_history),
                       ("catalogue.parquet", read_catalogue), ("selection.parquet", read_selection)):
        if (out_dir / name).is_file():
            read(out_dir / name)


def check_budget_floor(specs: list[TeacherSpec], task: Task, config: ScanConfig, cache: PredictionCache,
                       previous: list[dict]) -> None:
    """A FLOPs budget that cannot pay for a single teacher on the first round's probe (and no teacher is free
    from the cache) would skip them all: refused in one line before any work, naming the cheapest teacher."""
    budget = parse_budget(config.budget)
    alive = [spec for spec in specs if not spec.error]
    if budget is None or budget.kind != "flops" or not alive:
        return
    probe = make_probe(task, probe_sizes(config.probe_per_class, config.min_probe, config.eta)[0], config.seed)
    answered = {(row["content_hash"], row.get("probe_hash")) for row in previous}
    if any((s.content_hash, probe.probe_hash) in answered or prediction_key(s, probe) in cache for s in alive):
        return
    cheapest = min(alive, key=lambda spec: spec.flops_per_sample)
    cost = cheapest.flops_per_sample * len(probe)
    if cost > budget.amount:
        raise SelkdError(f"--budget: {budget} does not cover one teacher: the cheapest, {cheapest.teacher_id}, "
                         f"costs {cost:.3g} FLOPs on the first round's probe of {len(probe)} images")


def history_row(result: ScanResult, task: Task, zoo_size: int, new: int, config: ScanConfig, budget,
                top_k: int = 5) -> dict:
    """What the history table keeps of one scan: counts, cost, and the top teachers with their scores.
    `new`: teachers (new or changed files) the previous scan of this output had not seen."""
    top = result.ranked[:top_k]
    return {"scanned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "task": task.name,
            "task_hash": task.content_hash, "zoo_size": zoo_size, "new": new,
            "ran": sum(row.get("flops", 0) > 0 for row in result.rows), "cached": result.cached,
            "failed": result.failed, "dropped": result.dropped, "skipped": result.skipped, "flops": result.flops,
            "seconds": result.seconds, "budget": config.budget or "",
            "budget_flops": budget.amount if budget is not None and budget.kind == "flops" else None,
            "round_flops": list(result.round_flops), "scorer": config.scorers[0],
            "top_teachers": [row["teacher_id"] for row in top], "top_scores": [float(row["score"]) for row in top]}


def label_embeddings(specs: list[TeacherSpec], task: Task, cache_dir: Location) -> dict[str, np.ndarray]:
    """Unit text embeddings of every label name in the zoo and the task, cached on disk by name."""
    from .text import TEXT_MODEL, embed_label_names

    names = sorted({name for spec in specs if spec.label_names_known for name in spec.label_names}
                   | set(task.label_names))
    return EmbeddingCache(cache_dir, TEXT_MODEL).lookup(names, embed_label_names)


def cost_from_scan(scores_path: str | Path, teacher: str | Path, num_target_classes: int) -> np.ndarray | None:
    """The teacher's cost matrix from a scan's scores.parquet: the row of the teacher folder (by its path, or
    by an id equal to the folder's name for a flat zoo)."""
    if not Location(scores_path).is_file():
        raise SelkdError(f"{scores_path}: no such file; expected the scores.parquet of a scan (--scan)")
    folder = Path(teacher)
    for row in read_scores(scores_path):
        mine = row.get("path") == str(folder.resolve()) or row["teacher_id"] == str(teacher)
        if mine and row["cost_matrix"]:
            return np.asarray(row["cost_matrix"]).reshape(row["num_teacher_classes"], num_target_classes)
    return None


def distill(task: Task | str | Path, teacher: str | Path | None, out_dir: str | Path,
            config: DistillConfig = DistillConfig(), cost_matrix: np.ndarray | None = None,
            address: str | None = None, name: str | None = None, progress: Progress = quiet,
            cache_dir: str | Path | None = None) -> DistillResult:
    """Train a student for the task, distilled from `teacher` (a teacher folder), or from labels alone if None.

    The teacher's outputs on the student's images are computed by a runner actor and cached (`cache_dir`,
    default OUT/cache; pass a scan's cache to share it), unless `config.augment` makes it run online in the
    workers. Starting the same distillation again resumes its run from the latest checkpoint."""
    from .distributed.runtime import check_gpu_workers, connect
    from .distributed.train import fit_student

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


def cached_teacher_probs(spec: TeacherSpec, images: ProbeSet, cache: PredictionCache,
                         progress: Progress = quiet) -> np.ndarray:
    """The teacher's outputs on the student's images, computed once by a Ray Data pipeline over an actor pool
    (one actor per GPU, else per CPU slot; the images decoded in the actors) and cached like probe predictions
    (keyed by teacher hash, image-set hash, preprocessing). Only the probabilities are kept: the features of
    50,000 images would be a quarter of a gigabyte, and the distillation never reads them."""
    cached = cache.get(prediction_key(spec, images))
    if cached is not None:
        return cached.probs
    from .distributed.outputs import teacher_outputs

    started = time.perf_counter()
    probs = teacher_outputs(spec, images.images, progress)
    empty = np.zeros((len(probs), 0), np.float32)
    cache.put(prediction_key(spec, images), Predictions(probs, empty, time.perf_counter() - started))
    return probs


def trained_student(task: Task, data: StudentData, config: DistillConfig, weights: dict):
    """(the student with these weights, its accuracy on the task's test split)."""
    student = build_model(config.student, task.num_classes, data.input_size[0])
    student.load_state_dict(weights)
    test = task.indices("test")
    return student, evaluate(student, data, task.subset(test), task.labels[test])


def student_accuracy_here(task: Task, teacher: str | Path | None, config: DistillConfig,
                          cost_matrix: np.ndarray | None = None) -> dict:
    """Train one student in this process with the plain loop (no Ray Train): a benchmark's ground truth.

    Returns its test accuracy and per-epoch history; `teacher` None means labels only.
    """
    spec = teacher_spec(teacher) if teacher is not None else None
    if spec is None:
        config = replace(config, loss="ce")
    data = student_data(task, spec, config, cost_matrix)
    state = fit_plain(data, config)
    return {"test_accuracy": trained_student(task, data, config, state["model"])[1], "history": state["history"]}
