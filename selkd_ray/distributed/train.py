"""The Ray Train job: the plain student loop, plus prepare_model / prepare_data_loader / report / checkpoints.

A run is named by its inputs, so starting the same distillation again resumes from its latest checkpoint (or
returns at once when it had finished) instead of training from scratch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import ray
import ray.train
import torch
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer, prepare_data_loader, prepare_model
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

from ..config import DistillConfig
from ..errors import SelkdError
from ..runs import TrainedRun
from .runtime import selkd_error_in

if TYPE_CHECKING:
    from ..training.data import StudentData

STATE_FILE = "student.pt"


class SoloTorchBackend(_TorchBackend):
    """Ray Train's torch backend, with a process group that needs no TCPStore where none is needed.

    Why: torch's TCPStore (the default rendezvous of every process group) formats each peer's address with
    getnameinfo, a reverse DNS look-up, and 127.0.0.x is not in /etc/hosts as the v4-mapped address its
    dual-stack socket sees, so every run sent PTR queries to the machine's resolver (tests/test_no_network.py
    found them). A lone worker has no peers: no process group is made. Workers that all run on one node meet
    through a FileStore in a fresh local folder instead (no sockets, no look-ups). Workers on several nodes
    need the TCPStore, as Ray Train sets it up; their nodes' resolvers are then part of the cluster anyway."""

    def on_start(self, worker_group, backend_config) -> None:
        size = len(worker_group)
        if size == 1:
            return
        if len(set(worker_group.execute(node_id))) > 1:
            super().on_start(worker_group, backend_config)
            return
        self.store_dir = worker_group.execute_single(0, tempfile.mkdtemp, prefix="selkd-pg-")
        store = f"{self.store_dir}/store"
        worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, _setup_torch_process_group, backend=backend_config.backend,
                                                   world_rank=rank, world_size=size, init_method=f"file://{store}",
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(size)])


    def on_shutdown(self, worker_group, backend_config) -> None:
        super().on_shutdown(worker_group, backend_config)
        if getattr(self, "store_dir", None):
            worker_group.execute_single(0, shutil.rmtree, self.store_dir, ignore_errors=True)


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class LoopbackTorchConfig(TorchConfig):
    @property
    def backend_cls(self):
        return SoloTorchBackend


def train_func(job: dict) -> None:
    """Per-worker loop. `job` holds the DistillConfig as a dict and the StudentData's object ref.

    The student loop is imported here, not at the top: Ray Train's controller unpickles this function and so
    imports this module, and it needs neither timm nor POT (seconds of start-up on every run)."""
    from ..training.data import ready
    from ..training.loop import LoopState, fit_epochs, loaders, new_student

    config = DistillConfig(**job["config"])
    data: StudentData = ready(ray.get(job["data_ref"]))  # the images are decoded here, on the worker
    context = ray.train.get_context()
    student, optimizer = new_student(data, config)
    saved, state = resume_state(ray.train.get_checkpoint(), job.get("resume_from")), None
    if saved is not None:  # resume where the last written epoch ended
        student.load_state_dict(saved.pop("model"))
        optimizer.load_state_dict(saved.pop("optimizer"))
        state = LoopState.from_saved(saved)
    student = prepare_model(student)
    device = next(student.parameters()).device
    labelled_loader, all_loader = loaders(data, config, context.get_world_rank())
    all_loader = prepare_data_loader(all_loader, move_to_device=False)

    def report(progress: LoopState) -> None:
        metrics = {**progress.history[-1], "stopped": progress.stopped}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if context.get_world_rank() == 0:
                module = getattr(student, "module", student)
                torch.save({**progress.saved(), "model": module.state_dict(), "optimizer": optimizer.state_dict()},
                           Path(folder) / STATE_FILE)
                saved = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=saved)

    fit_epochs(student, optimizer, data, config, device, labelled_loader, all_loader, state, report,
               context.get_world_rank(), context.get_world_size())


def load_state(folder: str | Path) -> dict | None:
    """A checkpoint folder's training state, or None where its file is missing or half-written."""
    try:
        return torch.load(Path(folder) / STATE_FILE, weights_only=False, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None


def resume_state(registered: Checkpoint | None, on_disk: str | None) -> dict | None:
    """The state to resume from: Ray Train's latest registered checkpoint, or the newest one on disk where
    that holds more epochs. Why both: a worker writes its checkpoint folder before the controller registers
    it, so a driver stopped in between leaves a whole epoch on disk that Ray Train does not know of;
    resuming from the registered one alone trained that epoch twice."""
    candidates = []
    if registered is not None:
        with registered.as_directory() as folder:
            candidates.append(load_state(folder))
    if on_disk:
        candidates.append(load_state(on_disk))
    candidates = [state for state in candidates if state is not None]
    return max(candidates, key=lambda state: len(state["history"]), default=None)


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint folder of a run whose state loads, with that state. Folders newer than it are
    debris of a write a stop cut short (no loadable state): they are removed, so they are never counted or
    read as epochs. Folder names are Ray Train's timestamps, so name order is time order."""
    folders = sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for folder in folders:
        state = load_state(folder)
        if state is not None:
            return folder, state
        shutil.rmtree(folder, ignore_errors=True)
    return None


class EpochReports(ray.train.UserCallback):
    """Ray Train's own report of each finished epoch, passed on to the driver: the callback runs in the run's
    controller, so it puts (the runs' token, run index, epochs done) on a Ray queue that the driver reads while
    it waits."""

    def __init__(self, queue: Queue, token: str, index: int) -> None:
        self.queue, self.token, self.index = queue, token, index

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if metrics and "epoch" in metrics[0]:
            self.queue.put((self.token, self.index, int(metrics[0]["epoch"]) + 1))


QUEUES: dict[str, Queue] = {}


def epoch_queue() -> Queue:
    """The driver's queue for epoch reports, one per Ray job: its actor starts once, not for every run."""
    job = ray.get_runtime_context().get_job_id()
    if job not in QUEUES:
        QUEUES[job] = Queue(actor_options={"num_cpus": 0})
    return QUEUES[job]


@dataclass(frozen=True)
class TrainRun:
    """One student's Ray Train run: its data, its config, where its checkpoints go and under what name."""

    data: "StudentData"
    config: DistillConfig
    storage_path: str
    name: str
    max_failures: int = 2

    @property
    def run_dir(self) -> Path:
        return Path(self.storage_path) / self.name


def trainer_for(run: TrainRun, reports: EpochReports, resume_from: Path | None) -> TorchTrainer:
    return TorchTrainer(
        train_func,
        train_loop_config={"config": dataclasses.asdict(run.config), "data_ref": ray.put(run.data),
                           "resume_from": str(resume_from) if resume_from else None},
        scaling_config=ScalingConfig(num_workers=run.config.num_workers, use_gpu=run.config.use_gpu),
        torch_config=LoopbackTorchConfig(),
        run_config=RunConfig(storage_path=run.storage_path, name=run.name, callbacks=[reports],
                             failure_config=FailureConfig(max_failures=run.max_failures)),
    )


@ray.remote(num_cpus=0, max_retries=0)
def fit_run(run: TrainRun, reports: EpochReports, resume_from: Path | None) -> None:
    """A Ray task that drives one TorchTrainer to its end: several runs go side by side as several tasks, and
    the driver's own thread only waits (Ctrl-C reaches it at once as KeyboardInterrupt; the CLI then shuts
    Ray down, which ends the task, its controller and its workers; the checkpoints written stay)."""
    result = trainer_for(run, reports, resume_from).fit()
    if result.error:
        raise result.error


def on_this_node() -> NodeAffinitySchedulingStrategy:
    """The driving task stays on the driver's node: it is a waiting loop, and the driver reads the run there."""
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def fit_students(runs: list[TrainRun], on_epoch: Callable[[int, int], None] | None = None) -> list[TrainedRun]:
    """Run (or resume) every run's TorchTrainer side by side, each driven by a Ray task; return each run's last
    checkpoint's state: the best-validation weights ("model"), the per-epoch history and why it stopped.
    `on_epoch(run index, epochs done)` hears of each finished epoch from Ray Train's reports.

    A run resumes from, and its result is read from, the newest whole checkpoint on disk (see `resume_state`):
    storage is shared by every node of a run, so the driver reads what the workers wrote."""
    from ..training.loop import LoopState, finished

    pending, token = [], uuid.uuid4().hex
    for index, run in enumerate(runs):
        before = newest_checkpoint(run.run_dir)
        if before is not None and finished(LoopState.from_saved(before[1]), run.config):  # nothing to train
            if on_epoch is not None:
                on_epoch(index, len(before[1]["history"]))
            continue
        task = fit_run.options(scheduling_strategy=on_this_node())
        pending.append(task.remote(run, EpochReports(epoch_queue(), token, index), before[0] if before else None))
    if pending:
        wait_for(pending, token, on_epoch)
    return [finished_state(*newest_checkpoint(run.run_dir)) for run in runs]


def wait_for(waiting: list, token: str, on_epoch: Callable[[int, int], None] | None) -> None:
    """Wait for the driving tasks, passing on their epoch reports as they come; a worker's one-line error stays
    one line (a task file gone, say), whatever Ray Train and Ray wrapped it in."""
    queue = epoch_queue()
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.2)
        for sent, index, epochs in queue.get_nowait_batch(queue.qsize()):
            if sent == token and on_epoch is not None:
                on_epoch(index, epochs)
        for ref in done:
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001
                ours = selkd_error_in(err)
                if ours is None:
                    raise
                raise SelkdError(str(ours).splitlines()[0]) from None


def fit_student(data: StudentData, config: DistillConfig, storage_path: str, name: str,
                max_failures: int = 2, on_epoch: Callable[[int], None] | None = None) -> TrainedRun:
    """One run of `fit_students`."""
    hear = None if on_epoch is None else (lambda _, epochs: on_epoch(epochs))
    return fit_students([TrainRun(data, config, storage_path, name, max_failures)], hear)[0]


def finished_state(folder: Path, saved: dict) -> TrainedRun:
    """A run's result from its last checkpoint: the best-validation weights, else the last ones."""
    from ..training.loop import LoopState

    return LoopState.from_saved(saved).outcome(saved["model"], str(folder))
