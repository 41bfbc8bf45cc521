"""Distillation objectives: the Sinkhorn distance across label spaces, classic KL, cross-entropy."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..pot import solve_batch
from ..scoring.costs import FLOOR

PROBABILITY_FLOOR = 1e-6


def with_floor(probs: torch.Tensor, floor: float = PROBABILITY_FLOOR) -> torch.Tensor:
    """Mix in a tiny uniform share: an exact zero would make the log-domain plan's entropy NaN."""
    return probs * (1.0 - floor) + floor / probs.shape[1]


def sinkhorn_method(cost: torch.Tensor, eps: float, dtype: torch.dtype) -> str:
    """POT's plain Sinkhorn (scaling vectors, several times faster) while exp(-M/eps) stays well inside the
    dtype's range; the log-domain solver when it would underflow (small eps or large costs)."""
    limit = 600.0 if dtype == torch.float64 else 60.0
    return "sinkhorn" if float(cost.max()) / eps < limit else "log_sinkhorn"


def sinkhorn_distillation_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, cost: torch.Tensor,
                               tau: float = 2.0, eps: float = 0.05, max_iter: int = 50,
                               method: str | None = None, per_image: bool = False) -> torch.Tensor:
    """Mean over the batch of W_eps(softmax(t/tau), softmax(s/tau); M), solved by POT's batched log-domain Sinkhorn
    (`per_image`: the (B,) values themselves, for a mixture that weighs each image's teachers).

    teacher_logits: (B, C_T); student_logits: (B, C_S); cost: (C_T, C_S).
    W_eps(a, b; M) = min_{T 1 = a, T^T 1 = b} <T, M> + eps <T, log T>  (Cuturi 2013).
    The gradient reaches the student through the envelope theorem: dW/db = eps * g, with g POT's dual
    potential for b (returned divided by eps), so nothing is back-propagated through the iterations.
    50 iterations by default: the value is then within 0.01% of 100 iterations' at the demo's sizes, for half
    the time (bench/distill.py). Plain Sinkhorn where exp(-M/eps) is safe, log-domain iterations otherwise, and a probability floor keep it
    finite for small eps and near one-hot predictions.
    """
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    teacher = with_floor(F.softmax(teacher_logits.detach().to(student_logits.device, dtype) / tau, dim=1))
    student = with_floor(F.softmax(student_logits.to(dtype) / tau, dim=1))
    batch = student.shape[0]
    cost = cost.to(student)
    method = method or sinkhorn_method(cost, eps, dtype)
    with student.device:  # POT's plain batched solver makes its scaling vectors on the default device
        result = solve_batch(cost.expand(batch, *cost.shape), reg=eps, a=teacher, b=student.detach(),
                             method=method, grad="detach", max_iter=max_iter, tol=1e-4)
    _, student_potential = result.potentials  # log-domain: g / eps; plain: the scaling exp(g / eps)
    if method == "sinkhorn":
        student_potential = torch.log(student_potential)
    # value at the optimum, with the envelope-theorem gradient eps * g attached to the student side
    surrogate = result.value.detach() + eps * (student_potential.detach() * (student - student.detach())).sum(1)
    return surrogate if per_image else surrogate.mean()


def kl_distillation_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """Hinton et al. 2015: tau^2 KL(softmax(t/tau) || softmax(s/tau)); needs matching label spaces."""
    teacher = F.softmax(teacher_logits.detach() / tau, dim=1)
    return F.kl_div(F.log_softmax(student_logits / tau, dim=1), teacher, reduction="batchmean") * tau * tau


def mixture_distillation_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, cost: torch.Tensor,
                              parts: tuple[int, ...], weights: tuple[float, ...], tau: float = 2.0,
                              eps: float = 0.05, per_image: bool = False) -> torch.Tensor:
    """Several teachers at once: sum_k w_k W_eps(softmax(t_k/tau), softmax(s/tau); M_k).

    The K teachers' logits travel side by side as one (B, C_1 + ... + C_K) array and their cost matrices as one
    (C_1 + ... + C_K, C_S) stack; `parts` gives each teacher's class count, `weights` its w_k (summing to 1).
    Each teacher's prediction is carried onto the student's label space through its own cost matrix: the term is
    the weighted sum of one OT problem per teacher, not one problem over the pooled classes (whose plan could move
    mass between teachers). K = 1 with w = 1 is `sinkhorn_distillation_loss` itself.

    `per_image`: each image's teachers weighed by how sure each is of it once its prediction is carried onto the
    student's labels (`confidence_weights` with the cost matrices), so a teacher that does not know an image's
    class gives way there to one that does; the batch mean of the weighted sum."""
    terms, start = [], 0
    for classes in parts:
        rows = slice(start, start + classes)
        terms.append(sinkhorn_distillation_loss(teacher_logits[:, rows], student_logits, cost[rows], tau, eps,
                                                per_image=per_image))
        start += classes
    if not per_image:
        return sum((weight * term for weight, term in zip(weights, terms)), student_logits.new_zeros(()))
    image_weights = confidence_weights(teacher_logits, parts, weights, cost).to(terms[0])
    return (image_weights * torch.stack(terms, 1)).sum(1).mean()


def confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 - H(p) / log C per row: 1 for a one-hot prediction, 0 for a uniform one; comparable across teachers
    of any class count (a 2-class teacher's largest probability is never below 0.5, its entropy ratio can be)."""
    classes = probs.shape[1]
    if classes < 2:
        return torch.ones(probs.shape[0], dtype=probs.dtype, device=probs.device)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    return (1.0 - entropy / math.log(classes)).clamp(0.0, 1.0)


def confidence_weights(teacher_logits: torch.Tensor, parts: tuple[int, ...], weights: tuple[float, ...],
                       cost: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K) per-image weights w_k(x) = w_k c_k(x) / sum_j w_j c_j(x), c_k the teacher's confidence on x (its
    unsoftened prediction; with the stacked `cost`, that prediction carried onto the student's labels through
    the teacher's mapping, `coverage.mapping`: a specialist sure of a class it was never taught maps it onto
    several target classes at once, and so is unsure of it there); an image no teacher is sure of keeps the
    teachers' own w_k. Rows sum to 1; at K = 1 every weight is 1."""
    columns, start = [], 0
    for classes in parts:
        probs = F.softmax(teacher_logits[:, start:start + classes].detach().double(), dim=1)
        if cost is not None:
            rows = torch.pow(FLOOR, cost[start:start + classes].detach().to(probs))  # as `coverage.mapping`
            probs = probs @ (rows / rows.sum(1, keepdim=True))
        columns.append(confidence(probs))
        start += classes
    base = torch.tensor(weights, dtype=torch.float64, device=teacher_logits.device)
    scaled = torch.stack(columns, 1) * base
    total = scaled.sum(1, keepdim=True)
    return torch.where(total > 0, scaled / total.clamp_min(1e-300), base.expand_as(scaled))
