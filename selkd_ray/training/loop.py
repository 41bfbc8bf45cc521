"""The plain-torch student loop: it does not know about Ray (the Ray Train wrapper adds prepare/report only).

One epoch loop (`fit_epochs`) serves the Ray Train workers and the plain in-process runs: early stopping on
the validation split, the FLOPs budget, the best-validation weights and a resumable state all live here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DistillConfig
from ..errors import SelkdError
from ..models.forward import ForwardPath, host_state, model_input, place, to_device
from .losses import kl_distillation_loss, mixture_distillation_loss, sinkhorn_distillation_loss
from ..models.timm_models import build_model, count_flops
from ..models.augment import random_shift
from ..runs import StopReason, TrainedRun
from .data import StudentData, ready

# What a student's training draws and computes, as a version: bumped whenever the same config, data and seed
# would train a different student (2: per-epoch seeding, `seed_epoch`). A cache of trained students made by
# other code (the benches' ground truth) keys on it, so a reference trained by older code is never compared
# with a selection trained by today's (issue 41's references predated per-epoch seeding: a same-teacher student
# checked again today scored 0.970 where its cached reference said 0.990).
DRAWS_VERSION = 2


def step_loss(student: torch.nn.Module, data: StudentData, labelled: tuple, batch: tuple, config: DistillConfig,
              cost: torch.Tensor | None) -> torch.Tensor:
    """CE on a labelled minibatch, plus lambda times the distillation term on a (mostly unlabelled) minibatch."""
    x_lab, y_lab = labelled
    loss = F.cross_entropy(student(x_lab), y_lab)
    if config.loss == "ce" or config.lam == 0:
        return loss
    x_all, t_logits = batch
    s_logits = student(x_all)
    if config.loss == "kl":
        term = kl_distillation_loss(t_logits, s_logits, config.tau)
    elif data.teacher_parts:  # several teachers side by side (`student_data.mixed`)
        term = mixture_distillation_loss(t_logits, s_logits, cost, data.teacher_parts, data.teacher_weights,
                                         config.tau, config.eps, config.per_image_weights)
    else:
        term = sinkhorn_distillation_loss(t_logits, s_logits, cost, config.tau, config.eps)
    return loss + config.lam * term


def cosine_rate(config: DistillConfig, epoch: int, step: int, steps: int) -> float:
    """The learning rate of one step under `keep="last"`: annealed from the configured rate to zero over every
    step of `config.epochs` (cosine), so the last epoch is the settled one. A pure function of where the step
    is: a resumed run takes up the schedule where it stood, with no scheduler state to restore."""
    done = (epoch * steps + step) / max(config.epochs * steps, 1)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * done))


def train_epoch(student: torch.nn.Module, optimizer: torch.optim.Optimizer, data: StudentData, labelled_loader,
                all_loader, config: DistillConfig, device: torch.device, teacher: ForwardPath | None = None,
                generator: torch.Generator | None = None, epoch: int | None = None) -> float:
    """One pass over `all_loader`, each step paired with a fresh labelled minibatch. Returns the mean loss.

    With `config.augment` both minibatches are randomly shifted; an online teacher sees the same images. With
    `config.keep == "last"` (and the epoch given) each step's learning rate follows `cosine_rate`."""
    student.train()
    cost = to_device(data.cost.astype(np.float32), device) if data.cost is not None else None
    labelled_iter = iter(labelled_loader)
    losses = []
    for step, (images, t_logits) in enumerate(all_loader):
        if config.keep == "last" and epoch is not None:
            for group in optimizer.param_groups:
                group["lr"] = cosine_rate(config, epoch, step, len(all_loader))
        try:
            x_lab, y_lab = next(labelled_iter)
        except StopIteration:
            labelled_iter = iter(labelled_loader)
            x_lab, y_lab = next(labelled_iter)
        if config.augment:
            x_lab, images = random_shift(x_lab, generator=generator), random_shift(images, generator=generator)
        t_logits = teacher.logits(images) if teacher is not None else to_device(t_logits, device)
        labelled = (model_input(x_lab, data.preprocessing, device), to_device(y_lab, device))
        batch = (model_input(images, data.preprocessing, device), t_logits)
        loss = step_loss(student, data, labelled, batch, config, cost)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else 0.0


def evaluate(student: torch.nn.Module, data: StudentData, images: np.ndarray, labels: np.ndarray,
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy, through the one forward path."""
    correct = correct_on(student, data, images, labels, device)
    return float(correct.mean()) if len(correct) else 0.0


def correct_on(student: torch.nn.Module, data: StudentData, images: np.ndarray, labels: np.ndarray,
               device: torch.device | str = "cpu") -> np.ndarray:
    """Which images the student gets right (the race pairs trials image by image, as the guard pairs students)."""
    if len(labels) == 0:
        return np.zeros(0, bool)
    logits, _ = ForwardPath(student, data.preprocessing, torch.device(device)).outputs(images)
    return logits.argmax(1) == labels


def loaders(data: StudentData, config: DistillConfig, rank: int = 0):
    """(labelled loader sampling with replacement, loader over all training images with teacher logits)."""
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    labelled = np.flatnonzero(data.labels >= 0)
    labelled_set = torch.utils.data.TensorDataset(torch.from_numpy(data.images[labelled]),
                                                  torch.from_numpy(data.labels[labelled]))
    sampler = torch.utils.data.RandomSampler(labelled_set, replacement=True, num_samples=10**6, generator=generator)
    labelled_loader = torch.utils.data.DataLoader(labelled_set, batch_size=config.labelled_batch_size, sampler=sampler)
    t_logits = data.teacher_logits if data.teacher_logits is not None else np.zeros((len(data.images), 1), np.float32)
    all_set = torch.utils.data.TensorDataset(torch.from_numpy(data.images), torch.from_numpy(t_logits.astype(np.float32)))
    all_loader = torch.utils.data.DataLoader(all_set, batch_size=config.batch_size, shuffle=True, generator=generator)
    return labelled_loader, all_loader


def new_student(data: StudentData, config: DistillConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A freshly initialised student (seeded) and its optimiser: the same start for every runner."""
    torch.manual_seed(config.seed)
    student = build_model(config.student, data.num_classes, data.input_size[0])
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    return student, optimizer


def step_flops(forward: int, data: StudentData, config: DistillConfig, online_teacher: bool) -> int:
    """Training FLOPs of one step, `forward` being the student's forward FLOPs per image: ~3x that (forward +
    backward) on both minibatches, plus the teacher's forward on the distillation minibatch when it runs online."""
    distilled = config.batch_size if config.loss != "ce" and config.lam != 0 else 0
    teacher = data.teacher_flops * config.batch_size if online_teacher else 0
    return 3 * forward * (config.labelled_batch_size + distilled) + teacher


def flops_per_epoch(forward: int, data: StudentData, config: DistillConfig, online_teacher: bool, steps: int,
                    workers: int) -> int:
    """FLOPs of one epoch: `steps` training steps over all workers, and the validation pass each of the
    `workers` makes over the whole split (one student forward per image)."""
    return step_flops(forward, data, config, online_teacher) * steps + forward * len(data.val_labels) * workers


def epoch_flops(data: StudentData, config: DistillConfig) -> int:
    """FLOPs of one epoch over all workers, its validation pass included: what a FLOPs budget must cover at
    least once."""
    student, _ = new_student(data, config)
    steps = -(-len(data.images) // config.batch_size)
    return flops_per_epoch(count_flops(student, data.input_size), data, config, teacher_runs_online(data, config),
                           steps, config.num_workers)


def evaluation_flops(data: StudentData, config: DistillConfig, images: int) -> int:
    """Forward FLOPs of one student on `images` images (the test split, the guard's validation pass)."""
    student, _ = new_student(data, config)
    return count_flops(student, data.input_size) * images


def teacher_runs_online(data: StudentData, config: DistillConfig) -> bool:
    """Whether the workers run the teacher on every batch (augmentation on, and a loss that uses it)."""
    return data.teacher is not None and config.loss != "ce"


@dataclass
class LoopState:
    """Where a student's training stands, beside its weights: what each checkpoint saves. Mutable, it lives in
    the loop; it leaves as a checkpoint or as a TrainedRun."""

    epoch: int = -1
    history: list[dict] = field(default_factory=list)
    best_val: float = -1.0
    best_epoch: int = -1
    best_model: dict | None = None
    best_correct: str = ""  # the best epoch's validation images, 'y' right / 'n' wrong (letters: a table of
    # results must not read it as a number)
    flops: int = 0
    seconds: float = 0.0
    stop: StopReason = StopReason.NONE
    stopped: str = ""  # the stop in words

    def saved(self) -> dict:
        """Plain values for a checkpoint file (the weights and optimiser are added beside them)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "stop": self.stop.value}

    @classmethod
    def from_saved(cls, saved: dict) -> "LoopState":
        names = {f.name for f in fields(cls)} - {"stop"}
        return cls(**{k: v for k, v in saved.items() if k in names}, stop=StopReason.of(saved))

    def outcome(self, last_model: dict, checkpoint_path: str = "") -> TrainedRun:
        return TrainedRun(self.best_model or last_model, tuple(self.history), self.best_epoch, self.best_val,
                          int(self.flops), self.stop, self.stopped, checkpoint_path)

    def halt(self, reason: StopReason, text: str) -> None:
        self.stop, self.stopped = reason, text


def finished(state: LoopState, config: DistillConfig) -> bool:
    """Whether resuming `state` under `config` would train nothing: every epoch done, or stopped for a reason
    no later budget lifts (a budget stop is decided again on resume, by `fit_epochs`)."""
    stopped_for_good = state.stop is not StopReason.NONE and not state.stop.lifted_by_a_larger_budget
    return state.epoch + 1 >= config.epochs or stopped_for_good


def budget_stop(state: LoopState, config: DistillConfig, flops_per_epoch: int) -> tuple[StopReason, str]:
    """Why the next epoch may not start under the FLOPs and time budgets (StopReason.NONE when it may)."""
    if config.max_flops and state.flops + flops_per_epoch > config.max_flops:
        return StopReason.FLOPS_BUDGET, f"FLOPs budget: another epoch would pass {config.max_flops:.3g}"
    done = len(state.history)
    if config.max_seconds and done and state.seconds + state.seconds / done > config.max_seconds:
        return StopReason.TIME_BUDGET, f"time budget: another epoch would pass {config.max_seconds:.0f} s"
    return StopReason.NONE, ""


def fit_epochs(student: torch.nn.Module, optimizer: torch.optim.Optimizer, data: StudentData, config: DistillConfig,
               device: torch.device, labelled_loader, all_loader, state: LoopState | None = None,
               after_epoch: Callable[[LoopState], None] | None = None, rank: int = 0,
               world_size: int = 1) -> TrainedRun:
    """Train from `state` (resume) to the end: `config.epochs`, the FLOPs or time budget, or early stopping.
    A resumed run that stopped early stays stopped, unless it stopped for a budget that has since grown.

    Keeps the best-validation weights; `after_epoch(state)` is the hook for reporting and checkpoints. FLOPs
    count every worker's steps and validation passes; a budget is checked before each epoch (the caller checks
    the first)."""
    state = state or LoopState()
    module = getattr(student, "module", student)
    teacher = ForwardPath.for_teacher(data.teacher, device) if teacher_runs_online(data, config) else None
    epoch_cost = flops_per_epoch(count_flops(module, data.input_size), data, config, teacher is not None,
                                 len(all_loader) * world_size, world_size)
    generator = torch.Generator().manual_seed(config.seed * 7919 + rank)
    if state.stop.lifted_by_a_larger_budget:  # resumed with a budget that may have grown since
        state.halt(*budget_stop(state, config, epoch_cost))
    first = config.epochs if state.stop is not StopReason.NONE else state.epoch + 1  # a stopped run stays so
    for epoch in range(first, config.epochs):
        if hasattr(all_loader.sampler, "set_epoch"):
            all_loader.sampler.set_epoch(epoch)
        generator.manual_seed(config.seed * 7919 + rank * 104729 + epoch)
        seed_epoch(config, rank, epoch, (labelled_loader, all_loader))
        one_epoch(student, optimizer, data, config, device, (labelled_loader, all_loader), teacher, generator,
                  state, epoch, epoch_cost)
        if after_epoch is not None:
            after_epoch(state)
        if state.stop is not StopReason.NONE:
            break
    return state.outcome(host_state(module))


def seed_epoch(config: DistillConfig, rank: int, epoch: int, batches: tuple) -> None:
    """Every random draw of an epoch (its minibatch order, its labelled samples, dropout) from (seed, rank,
    epoch) alone: a run resumed from a checkpoint at any epoch draws what the run straight through drew, where
    a generator seeded once would start its sequence over on resume."""
    torch.manual_seed(config.seed * 7919 + rank * 104729 + epoch + 1)
    for loader in batches:
        sampler_generator = getattr(getattr(loader, "sampler", None), "generator", None)
        if sampler_generator is not None:
            sampler_generator.manual_seed(config.seed * 1000 + rank + 1_000_003 * (epoch + 1))


def one_epoch(student: torch.nn.Module, optimizer: torch.optim.Optimizer, data: StudentData, config: DistillConfig,
              device: torch.device, batches: tuple, teacher: ForwardPath | None, generator: torch.Generator,
              state: LoopState, epoch: int, flops_per_epoch: int) -> None:
    """Train one epoch, validate, and record it in `state`: the best weights, and whether to stop (no
    validation gain for `patience` epochs, or a budget the next epoch would pass)."""
    module = getattr(student, "module", student)
    started = time.perf_counter()
    loss = train_epoch(student, optimizer, data, *batches, config, device, teacher, generator, epoch)
    if not math.isfinite(loss):  # never a "finished" student trained on NaN: the run stops, saying where
        raise SelkdError(f"epoch {epoch + 1}: the training loss became {loss} (not finite); nothing after epoch "
                         f"{epoch} is kept: lower --lambda or the learning rate, or check the teacher's outputs")
    seconds = time.perf_counter() - started  # the training pass alone: what the overhead benchmark compares
    correct = correct_on(module, data, data.val_images, data.val_labels, device)
    val = float(correct.mean()) if len(correct) else 0.0
    state.flops += flops_per_epoch
    state.seconds += time.perf_counter() - started
    state.epoch = epoch
    state.history.append({"epoch": epoch, "loss": loss, "val_accuracy": val, "flops": state.flops,
                          "seconds": seconds})
    if val > state.best_val or config.keep == "last":  # "last": every epoch replaces the one kept
        state.best_val, state.best_epoch, state.best_model = val, epoch, host_state(module)
        state.best_correct = "".join("y" if right else "n" for right in correct)
    if config.patience and epoch - state.best_epoch >= config.patience:
        state.halt(StopReason.EARLY_STOP, f"early stop: no validation gain for {config.patience} epochs")
    if epoch + 1 < config.epochs and (budget := budget_stop(state, config, flops_per_epoch))[0] is not StopReason.NONE:
        state.halt(*budget)


def fit_plain(data: StudentData, config: DistillConfig, device: str = "cpu") -> TrainedRun:
    """The whole student loop in this process, no Ray: for benchmarks' ground truth and overhead baselines.

    Returns what the Ray Train job returns: the best-validation weights and a per-epoch history."""
    data = ready(data)
    student, optimizer = new_student(data, config)
    student = place(student, torch.device(device))
    labelled_loader, all_loader = loaders(data, config)
    return fit_epochs(student, optimizer, data, config, torch.device(device), labelled_loader, all_loader)
