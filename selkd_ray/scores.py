"""Teacher scores (higher = better teacher), each a pure function of arrays, registered by name.

Every scorer takes (probs (n, C_T), features (n, d), labels (n,), num_target_classes) and returns a float.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import ot

from .costs import COST_BUILDERS, conditional_cost, target_marginal
from .probe import halves
from .records import content_hash
from .registry import Registry

Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, int], float]
SCORERS: Registry[Scorer] = Registry("scorer")
DEFAULT_SCORER = "ot"


def transport_cost_to_labels(probs: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> float:
    """Mean over samples of W(p_n, delta_{y_n}; M) = sum_i p_n[i] M[i, y_n], solved by POT's exact OT.

    W is linear in p against a one-hot target, so the mean over the samples of class j equals
    W(mean p over class j, delta_j; M): one small exact OT problem per target class.
    """
    num_target = cost.shape[1]
    weights = target_marginal(labels, num_target)
    total = 0.0
    for j in np.flatnonzero(weights):
        mean_prediction = probs[labels == j].mean(0).astype(np.float64)
        mean_prediction /= mean_prediction.sum()
        total += weights[j] * float(ot.emd2(mean_prediction, np.eye(num_target)[j], cost.astype(np.float64)))
    return total


@SCORERS.register("ot")
def ot_score(probs: np.ndarray, features: np.ndarray, labels: np.ndarray, num_target_classes: int,
             cost_builder: str = "conditional") -> float:
    """Minus the cross-fitted transport cost from the teacher's predictions to the target labels.

    M is fitted on one half of the probe and the cost measured on the other, then the halves swap:
    a teacher is not rewarded for memorising the probe. (Lu, Ye, Zhan, arXiv 2204.11526.)
    """
    build = COST_BUILDERS.get(cost_builder)
    first, second = halves(labels)
    costs = []
    for fit, held_out in ((first, second), (second, first)):
        if len(held_out) == 0:
            continue
        cost = build(probs[fit], labels[fit], num_target_classes)
        costs.append(transport_cost_to_labels(probs[held_out], labels[held_out], cost))
    return -float(np.mean(costs))


@SCORERS.register("leep")
def leep_score(probs: np.ndarray, features: np.ndarray, labels: np.ndarray, num_target_classes: int) -> float:
    """LEEP (Nguyen et al. 2020): mean log of sum_z P(y_n | z) theta(x_n)_z, with P(y|z) from the joint."""
    joint = probs.T @ np.eye(num_target_classes)[labels] / len(labels)  # (C_T, C_S)
    conditional = joint / np.maximum(joint.sum(1, keepdims=True), 1e-12)
    expected = (probs @ conditional)[np.arange(len(labels)), labels]
    return float(np.mean(np.log(np.maximum(expected, 1e-12))))


@SCORERS.register("nce")
def nce_score(probs: np.ndarray, features: np.ndarray, labels: np.ndarray, num_target_classes: int) -> float:
    """NCE (Tran et al. 2019): minus the conditional entropy H(Y | Z) with Z the teacher's hard label."""
    hard = probs.argmax(1)
    joint = np.zeros((probs.shape[1], num_target_classes))
    np.add.at(joint, (hard, labels), 1.0)
    joint /= len(labels)
    marginal = joint.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / marginal), 0.0)
    return float(terms.sum())


@SCORERS.register("random")
def random_score(probs: np.ndarray, features: np.ndarray, labels: np.ndarray, num_target_classes: int) -> float:
    """A deterministic random number per teacher output: the floor every real scorer must beat."""
    seed = int(content_hash(probs.astype(np.float32))[:8], 16)
    return float(np.random.default_rng(seed).random())


def score_all(names: list[str], probs: np.ndarray, features: np.ndarray, labels: np.ndarray,
              num_target_classes: int) -> dict[str, float]:
    """Every requested scorer on one teacher's cached predictions."""
    return {name: SCORERS.get(name)(probs, features, labels, num_target_classes) for name in names}
