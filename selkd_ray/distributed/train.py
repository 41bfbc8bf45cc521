"""The Ray Train job: the plain student loop, plus prepare_model / prepare_data_loader / report / checkpoints.

A run is named by its inputs, so starting the same distillation again resumes from its latest checkpoint (or
returns at once when it had finished) instead of training from scratch.
"""
from __future__ import annotations

import dataclasses
import pickle
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import ray
import ray.train
import torch
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer, prepare_data_loader, prepare_model
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

from ..config import DistillConfig
from ..errors import SelkdError
from .runtime import selkd_error_in

if TYPE_CHECKING:
    from ..training.loop import StudentData

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
    from ..training.loop import fit_epochs, loaders, new_student, ready

    config = DistillConfig(**job["config"])
    data: StudentData = ready(ray.get(job["data_ref"]))  # the images are decoded here, on the worker
    context = ray.train.get_context()
    student, optimizer = new_student(data, config)
    state = resume_state(ray.train.get_checkpoint(), job.get("resume_from"))
    if state is not None:  # resume where the last written epoch ended
        student.load_state_dict(state.pop("model"))
        optimizer.load_state_dict(state.pop("optimizer"))
    student = prepare_model(student)
    device = next(student.parameters()).device
    labelled_loader, all_loader = loaders(data, config, context.get_world_rank())
    all_loader = prepare_data_loader(all_loader, move_to_device=False)

    def report(progress: dict) -> None:
        metrics = {**progress["history"][-1], "stopped": progress["stopped"]}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if context.get_world_rank() == 0:
                module = getattr(student, "module", student)
                torch.save({**progress, "model": module.state_dict(), "optimizer": optimizer.state_dict()},
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


class EpochWatcher:
    """Calls `on_epoch(epochs done)` from a background thread as the run's checkpoints appear on disk: the
    driver's view of a Ray Train run while `fit()` blocks (one checkpoint is written per epoch)."""

    def __init__(self, run_dir: Path, on_epoch: Callable[[int], None], poll: float = 0.5) -> None:
        self.run_dir, self.on_epoch, self.poll = run_dir, on_epoch, poll
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        seen = -1
        while not self.stop.wait(self.poll):
            done = len([p for p in self.run_dir.glob("checkpoint_*") if p.is_dir()]) if self.run_dir.is_dir() else 0
            if done != seen:
                seen = done
                self.on_epoch(done)

    def __enter__(self) -> "EpochWatcher":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def fit_interruptibly(trainer: TorchTrainer):
    """`trainer.fit()` on a helper thread, the caller's thread waiting on it. Called from the main thread, fit()
    would install Ray Train's own SIGINT handler, whose graceful abort kept a Ctrl-C'd `selkd distill` alive
    for over a minute; this way Ctrl-C reaches the caller as KeyboardInterrupt at once (the CLI then shuts
    Ray down, which ends the run's controller and workers; the checkpoints already written stay, and the
    same command resumes from the last one)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the waiting thread as it is
            outcome["error"] = err

    thread = threading.Thread(target=run, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def fit_student(data: StudentData, config: DistillConfig, storage_path: str, name: str,
                max_failures: int = 2, on_epoch: Callable[[int], None] | None = None) -> dict:
    """Run (or resume) the TorchTrainer; return the last checkpoint's state: the best-validation weights
    ("model"), the per-epoch history and why it stopped. `on_epoch(n)` hears of each finished epoch.

    The run resumes from, and its result is read from, the newest whole checkpoint on disk (see
    `resume_state`): storage is shared by every node of a run, so the driver reads what the workers wrote."""
    from ..training.loop import finished

    run_dir = Path(storage_path) / name
    before = newest_checkpoint(run_dir)
    if before is not None and finished(before[1], config):  # the same run again: nothing to train, no Ray Train
        if on_epoch is not None:
            on_epoch(len(before[1]["history"]))
        return finished_state(*before)
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"config": dataclasses.asdict(config), "data_ref": ray.put(data),
                           "resume_from": str(before[0]) if before else None},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        torch_config=LoopbackTorchConfig(),
        run_config=RunConfig(storage_path=storage_path, name=name,
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    try:
        if on_epoch is None:
            result = fit_interruptibly(trainer)
        else:
            with EpochWatcher(run_dir, on_epoch):
                result = fit_interruptibly(trainer)
        if result.error:
            raise result.error
    except Exception as err:  # noqa: BLE001 - a worker's one-line error stays one line (a task file gone, say)
        ours = selkd_error_in(err)
        if ours is None:
            raise
        raise SelkdError(str(ours).splitlines()[0]) from None
    return finished_state(*newest_checkpoint(run_dir))


def finished_state(folder: Path, state: dict) -> dict:
    """A run's result from its last checkpoint: the best-validation weights as "model"."""
    state["model"] = state["best_model"] or state["model"]
    state["checkpoint_path"] = str(folder)
    return state
