"""The Ray Train job: the plain student loop, plus prepare_model / prepare_data_loader / report / checkpoints.

A run is named by its inputs, so starting the same distillation again resumes from its latest checkpoint (or
returns at once when it had finished) instead of training from scratch. Small students share a run, one after
the other (`packs`): a run's start-up costs more than their training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import ray
import ray.train
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_data_loader, prepare_model
from ray.util.queue import Queue

from ..config import DistillConfig
from ..errors import SelkdError
from ..runs import TrainedRun
from .checkpoints import newest_checkpoint, resume_states, save_states
from .placement import removing_leftovers, without_cleaner
from .runtime import selkd_error_in, started_here
from .torch_backend import LoopbackTorchConfig

if TYPE_CHECKING:
    from ..training.data import StudentData

# Planned training FLOPs below which students share one Ray Train run: a run's start-up costs about 8 s of CPU
# here (a controller, a worker and helper actors, each a fresh process importing Ray Train, the worker torch,
# timm and POT too), in which a core trains about this much of a small student (~2e10 FLOP/s).
PACK_WORTH_FLOPS = 2e11


def train_func(job: dict) -> None:
    """Per-worker loop over the run's students (`job['members']`: each one's DistillConfig as a dict and its
    StudentData's object ref), one after the other; a student already finished in the checkpoint it resumes
    from is not trained again.

    The student loop is imported here, not at the top: Ray Train's controller unpickles this function and so
    imports this module, and it needs neither timm nor POT (seconds of start-up on every run)."""
    from ..training.data import ready
    from ..training.loop import LoopState, finished

    states = resume_states(ray.train.get_checkpoint(), job.get("resume_from"))  # rank 0 adds to them
    for member, spec in enumerate(job["members"]):
        config = DistillConfig(**spec["config"])
        if member < len(states) and finished(LoopState.from_saved(states[member]), config):
            continue
        train_member(member, config, ready(ray.get(spec["data_ref"])), states)  # decoded here, on the worker


def train_member(member: int, config: DistillConfig, data: "StudentData", states: list[dict]) -> None:
    """One student of the run, from its saved state where it has one; each epoch's report checkpoints every
    student begun so far (the earlier ones as they finished)."""
    from ..training.loop import LoopState, fit_epochs, loaders, new_student

    context = ray.train.get_context()
    student, optimizer = new_student(data, config)
    state = None
    if member < len(states):  # resume where the last written epoch ended
        saved = dict(states[member])
        student.load_state_dict(saved.pop("model"))
        optimizer.load_state_dict(saved.pop("optimizer"))
        state = LoopState.from_saved(saved)
    student = prepare_model(student)
    device = next(student.parameters()).device
    labelled_loader, all_loader = loaders(data, config, context.get_world_rank())
    all_loader = prepare_data_loader(all_loader, move_to_device=False)

    def report(progress: LoopState) -> None:
        metrics = {**progress.history[-1], "stopped": progress.stopped, "member": member}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if context.get_world_rank() == 0:
                module = getattr(student, "module", student)
                assert member <= len(states), f"student {member} of the run trained before student {len(states)}"
                states[member:member + 1] = [{**progress.saved(), "model": module.state_dict(),
                                              "optimizer": optimizer.state_dict()}]
                save_states(states, Path(folder))
                saved = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=saved)

    fit_epochs(student, optimizer, data, config, device, labelled_loader, all_loader, state, report,
               context.get_world_rank(), context.get_world_size())


class EpochReports(ray.train.UserCallback):
    """Ray Train's own report of each finished epoch, passed on to the driver: the callback runs in the run's
    controller, so it puts (the runs' token, the student's index among the driver's runs, epochs done) on a Ray
    queue that the driver reads while it waits."""

    def __init__(self, queue: Queue, token: str, indices: tuple[int, ...]) -> None:
        self.queue, self.token, self.indices = queue, token, indices

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if metrics and "epoch" in metrics[0]:
            index = self.indices[int(metrics[0].get("member", 0))]
            self.queue.put((self.token, index, int(metrics[0]["epoch"]) + 1))


QUEUES: dict[str, Queue] = {}


def epoch_queue() -> Queue:
    """The driver's queue for epoch reports, one per Ray job: its actor starts once, not for every run."""
    job = ray.get_runtime_context().get_job_id()
    if job not in QUEUES:
        QUEUES[job] = Queue(actor_options={"num_cpus": 0})
    return QUEUES[job]


@dataclass(frozen=True)
class TrainRun:
    """One student to train: its data, its config, where its run's checkpoints go and under what name, and its
    planned training FLOPs (`work`; unknown: never packed with another)."""

    data: "StudentData"
    config: DistillConfig
    storage_path: str
    name: str
    max_failures: int = 2
    work: float = math.inf


@dataclass(frozen=True)
class Pack:
    """Students one Ray Train run trains one after the other (most often one). A pack of one is named as its
    student; a larger one by its students' names, so the same students started again resume the same run."""

    runs: tuple[TrainRun, ...]
    indices: tuple[int, ...]  # each student's place among the runs the driver asked for

    @property
    def name(self) -> str:
        if len(self.runs) == 1:
            return self.runs[0].name
        return "pack-" + hashlib.sha256("\n".join(run.name for run in self.runs).encode()).hexdigest()[:24]

    @property
    def run_dir(self) -> Path:
        return Path(self.runs[0].storage_path) / self.name


def packs(runs: list[TrainRun]) -> list[Pack]:
    """Which students share a Ray Train run. Students planned below PACK_WORTH_FLOPS that scale alike (the same
    workers, GPUs, storage and retries) train one after the other in one run: side by side they would save at
    most their training time, less than the start-up of a run of their own. Larger ones keep a run each and
    train side by side."""
    groups: list[list[int]] = []
    small: dict[tuple, list[int]] = {}
    for index, run in enumerate(runs):
        key = (run.storage_path, run.config.num_workers, run.config.use_gpu, run.max_failures)
        if run.work < PACK_WORTH_FLOPS and key in small:
            small[key].append(index)
            continue
        groups.append([index])
        if run.work < PACK_WORTH_FLOPS:
            small[key] = groups[-1]
    return [Pack(tuple(runs[i] for i in group), tuple(group)) for group in groups]


class StudentTrainer(TorchTrainer):
    """Ray Train's TorchTrainer, less the Ray Data shard manager where the run reads no Ray Dataset (ours
    never do: a student's images travel as one object): Ray Train starts that manager as an actor process on
    every run whether or not there is a dataset to shard, a second of CPU for nothing."""

    def _create_default_callbacks(self):
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

        callbacks = super()._create_default_callbacks()
        return callbacks if self.datasets else [c for c in callbacks if not isinstance(c, DatasetsCallback)]


class EmbeddedStudentTrainer(StudentTrainer):
    """On a Ray the driver started: no placement-group cleaner actor either (`placement.py`)."""

    def _create_default_callbacks(self):
        return without_cleaner(super()._create_default_callbacks())


def trainer_for(pack: Pack, reports: EpochReports, resume_from: Path | None, embedded: bool) -> TorchTrainer:
    first = pack.runs[0]
    members = [{"config": dataclasses.asdict(run.config), "data_ref": ray.put(run.data)} for run in pack.runs]
    return (EmbeddedStudentTrainer if embedded else StudentTrainer)(
        train_func,
        train_loop_config={"members": members, "resume_from": str(resume_from) if resume_from else None},
        scaling_config=ScalingConfig(num_workers=first.config.num_workers, use_gpu=first.config.use_gpu),
        torch_config=LoopbackTorchConfig(),
        run_config=RunConfig(storage_path=first.storage_path, name=pack.name, callbacks=[reports],
                             failure_config=FailureConfig(max_failures=first.max_failures)),
    )


class Driving:
    """One TorchTrainer driven to its end by a daemon thread of the driver: several runs go side by side as
    several threads, the driver's main thread only waits (Ctrl-C reaches it at once as KeyboardInterrupt, and no
    thread holds the process; the CLI then shuts Ray down, which ends the runs' controllers and workers; the
    checkpoints written stay). Not a Ray task: that was one more worker process per run, importing Ray Train and
    torch before the run's controller could even start (about 2 s of CPU and of start-up, every command)."""

    def __init__(self, pack: Pack, reports: EpochReports, resume_from: Path | None, embedded: bool) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.fit, args=(pack, reports, resume_from, embedded), daemon=True,
                                       name=f"selkd-run-{pack.name}")
        self.thread.start()

    def fit(self, pack: Pack, reports: EpochReports, resume_from: Path | None, embedded: bool) -> None:
        try:
            result = trainer_for(pack, reports, resume_from, embedded).fit()
            if result.error:
                raise result.error
        except BaseException as err:  # noqa: BLE001 - passed to the driver's main thread, which raises it
            self.error = err

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def fit_students(runs: list[TrainRun], on_epoch: Callable[[int, int], None] | None = None) -> list[TrainedRun]:
    """Run (or resume) every student's training, each pack of them in one TorchTrainer, the packs side by side,
    each driven by a thread of the driver (`Driving`); return each student's state in its run's last
    checkpoint: the best-validation weights ("model"), the per-epoch history and why it stopped.
    `on_epoch(run index, epochs done)` hears of each finished epoch from Ray Train's reports.

    A run resumes from, and its result is read from, the newest whole checkpoint on disk (see `resume_states`):
    storage is shared by every node of a run, so the driver reads what the workers wrote."""
    from ..training.loop import LoopState, finished

    pending, token, planned, embedded = [], uuid.uuid4().hex, packs(runs), started_here()
    for pack in planned:
        before = newest_checkpoint(pack.run_dir)
        done = before[1] if before is not None else []
        if len(done) == len(pack.runs) and all(finished(LoopState.from_saved(state), run.config)
                                               for state, run in zip(done, pack.runs)):  # nothing to train
            for index, state in zip(pack.indices, done):
                if on_epoch is not None:
                    on_epoch(index, len(state["history"]))
            continue
        pending.append(Driving(pack, EpochReports(epoch_queue(), token, pack.indices),
                               before[0] if before else None, embedded))
    if pending:
        with removing_leftovers(embedded):
            wait_for(pending, token, on_epoch)
    trained: dict[int, TrainedRun] = {}
    for pack in planned:
        folder, states = newest_checkpoint(pack.run_dir)
        trained.update({index: finished_state(folder, state) for index, state in zip(pack.indices, states)})
    return [trained[index] for index in range(len(runs))]


def wait_for(runs: list[Driving], token: str, on_epoch: Callable[[int, int], None] | None) -> None:
    """Wait for the runs, passing on their epoch reports as they come; a worker's one-line error stays one line
    (a task file gone, say), whatever Ray Train and Ray wrapped it in."""
    queue, waiting = epoch_queue(), list(runs)
    while waiting:
        waiting[0].thread.join(0.2)
        done = [run for run in waiting if run.done]  # before the reports: a finished run's last one is read now
        for sent, index, epochs in queue.get_nowait_batch(queue.qsize()):
            if sent == token and on_epoch is not None:
                on_epoch(index, epochs)
        for run in done:
            waiting.remove(run)
            if run.error is not None:
                ours = selkd_error_in(run.error)
                if ours is None:
                    raise run.error
                raise SelkdError(str(ours).splitlines()[0]) from None


def fit_student(data: StudentData, config: DistillConfig, storage_path: str, name: str,
                max_failures: int = 2, on_epoch: Callable[[int], None] | None = None) -> TrainedRun:
    """One run of `fit_students`."""
    hear = None if on_epoch is None else (lambda _, epochs: on_epoch(epochs))
    return fit_students([TrainRun(data, config, storage_path, name, max_failures)], hear)[0]


def finished_state(folder: Path, saved: dict) -> TrainedRun:
    """A student's result from its run's last checkpoint: the best-validation weights, else the last ones."""
    from ..training.loop import LoopState

    return LoopState.from_saved(saved).outcome(saved["model"], str(folder))
