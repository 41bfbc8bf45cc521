"""The plain-torch student loop: it does not know about Ray (the Ray Train wrapper adds prepare/report only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import DistillConfig
from .losses import kl_distillation_loss, sinkhorn_distillation_loss
from .models import build_model
from .preprocess import to_model_input


@dataclass
class StudentData:
    """Everything the student loop needs, as arrays (it travels to the workers once)."""

    images: np.ndarray  # uint8 (n, C, H, W): labelled train + unlabelled images
    labels: np.ndarray  # (n,), -1 where unlabelled
    teacher_logits: np.ndarray | None  # (n, C_T) or None for label-only
    cost: np.ndarray | None  # (C_T, C_S) for the OT loss
    val_images: np.ndarray
    val_labels: np.ndarray
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


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
    else:
        term = sinkhorn_distillation_loss(t_logits, s_logits, cost, config.tau, config.eps)
    return loss + config.lam * term


def inputs(data: StudentData, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    return to_model_input(images, data.input_size, data.mean, data.std)


def train_epoch(student: torch.nn.Module, optimizer: torch.optim.Optimizer, data: StudentData, labelled_loader,
                all_loader, config: DistillConfig, device: torch.device) -> float:
    """One pass over `all_loader`, each step paired with a fresh labelled minibatch. Returns the mean loss."""
    student.train()
    cost = torch.as_tensor(data.cost, dtype=torch.float32, device=device) if data.cost is not None else None
    labelled_iter = iter(labelled_loader)
    losses = []
    for images, t_logits in all_loader:
        try:
            x_lab, y_lab = next(labelled_iter)
        except StopIteration:
            labelled_iter = iter(labelled_loader)
            x_lab, y_lab = next(labelled_iter)
        labelled = (inputs(data, x_lab).to(device), y_lab.to(device))
        batch = (inputs(data, images).to(device), t_logits.to(device))
        loss = step_loss(student, data, labelled, batch, config, cost)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else 0.0


@torch.no_grad()
def evaluate(student: torch.nn.Module, data: StudentData, images: np.ndarray, labels: np.ndarray,
             device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """Top-1 accuracy."""
    student.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = inputs(data, images[start:start + batch_size]).to(device)
        correct += int((student(x).argmax(1).cpu().numpy() == labels[start:start + batch_size]).sum())
    return correct / max(len(labels), 1)


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


def fit_plain(data: StudentData, config: DistillConfig, device: str = "cpu") -> dict:
    """The whole student loop in this process, no Ray: for benchmarks' ground truth and overhead baselines.

    Returns the same state as the Ray Train job: final weights and a per-epoch history.
    """
    student, optimizer = new_student(data, config)
    student.to(device)
    labelled_loader, all_loader = loaders(data, config)
    history = []
    for epoch in range(config.epochs):
        loss = train_epoch(student, optimizer, data, labelled_loader, all_loader, config, torch.device(device))
        history.append({"epoch": epoch, "loss": loss,
                        "val_accuracy": evaluate(student, data, data.val_images, data.val_labels, device)})
    return {"model": student.state_dict(), "history": history}
