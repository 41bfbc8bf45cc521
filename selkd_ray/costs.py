"""Cost matrices M (C_T x C_S) between a teacher's label space and the target's, registered by name.

Every builder returns costs on a scale shared by all teachers for one target (never normalised per
teacher), so transport costs stay comparable across teachers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import ot

from .registry import Registry

CostBuilder = Callable[..., np.ndarray]
COST_BUILDERS: Registry[CostBuilder] = Registry("cost builder")

SMOOTHING = 0.01  # the small count `a` added to every (teacher class, target class) cell
FLOOR = 1e-3  # a': costs are -log P / log(1/a'), so a probability of a' costs 1 for every teacher


@COST_BUILDERS.register("conditional")
def conditional_cost(probs: np.ndarray, labels: np.ndarray, num_target_classes: int,
                     smoothing: float = SMOOTHING, floor: float = FLOOR) -> np.ndarray:
    """M[i, j] = -log P(y=j | z=i) / log(1/a'), estimated from teacher probabilities on labelled data.

    P(y=j | z=i) = (sum_n p_n[i] 1[y_n=j] + a) / (sum_n p_n[i] + a C_S)
    probs: (n, C_T) teacher softmax outputs; labels: (n,) target labels in [0, C_S).
    A teacher class whose mass lands on one target class costs ~0 to carry there; one spread evenly
    costs log(C_S)/log(1/a') everywhere. Ref: the conditional ("soft NCE") view of Tran et al. 2019.
    """
    onehot = np.eye(num_target_classes)[labels]  # (n, C_S)
    joint = probs.T @ onehot  # (C_T, C_S) soft co-occurrence counts
    conditional = (joint + smoothing) / (probs.sum(0)[:, None] + smoothing * num_target_classes)
    return -np.log(conditional) / np.log(1.0 / floor)


def target_marginal(labels: np.ndarray, num_target_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_target_classes).astype(np.float64) / len(labels)


def label_plan(probs: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Exact OT plan (C_T x C_S) between the teacher's mean prediction and the target's label marginal.

    It says which teacher classes carry onto which target classes (POT's network simplex).
    """
    teacher_marginal = probs.mean(0).astype(np.float64)
    teacher_marginal /= teacher_marginal.sum()
    return ot.emd(teacher_marginal, target_marginal(labels, cost.shape[1]), cost.astype(np.float64))


def describe_plan(plan: np.ndarray, teacher_names: tuple[str, ...], target_names: tuple[str, ...]) -> str:
    """For each target class, the teacher class sending it the most mass: 'five<-5 (0.31), ...'."""
    parts = []
    for j, target in enumerate(target_names):
        column = plan[:, j]
        share = column.max() / max(column.sum(), 1e-12)
        parts.append(f"{target}<-{teacher_names[int(column.argmax())]} ({share:.2f})")
    return ", ".join(parts)
