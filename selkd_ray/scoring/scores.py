"""Teacher scores (higher = better teacher), each a pure function of arrays, registered by name in
`registry.SCORERS` (the package imports every scorer module, so importing any of it fills the registry).

Every scorer takes one teacher's Evidence (probs (n, C_T), features (n, d), labels (n,), and the optional
classifier rows and label-name embeddings) and returns a float.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..config import DistillConfig
from .costs import COST_BUILDERS, expected_empirical_prediction, target_marginal
from .discriminant import fit_discriminant
from ..errors import SelkdError
from ..pot import ot, solve_batch
from .probe import halves
from ..records import Evidence, content_hash
from .registry import LABEL_NAME_SCORERS, SCORERS, TASK_SCORERS

OT_EPS = DistillConfig.eps  # the Sinkhorn regularisation of the distillation objective
OT_TAU = DistillConfig.tau  # and its softening temperature
PROBABILITY_FLOOR = 1e-6


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


def canonical_order(evidence: Evidence) -> np.ndarray:
    """A sample order fixed by content (label, then the bytes of the sample's prediction and features),
    so cross-fitting folds and anything else order-dependent ignore the order samples came in."""
    rows = [a.astype(np.float32) for a in (evidence.probs, evidence.features) if a is not None]
    keys = [content_hash(*(a[i] for a in rows)) for i in range(len(evidence.labels))]
    return np.array(sorted(range(len(evidence.labels)), key=lambda i: (evidence.labels[i], keys[i])), dtype=int)


def cross_fitted_transport_score(evidence: Evidence, cost_builder: str) -> float:
    """Minus the cross-fitted transport cost from the teacher's predictions to the target labels.

    M is fitted on one half of the probe and the cost measured on the other, then the halves swap:
    a teacher is not rewarded for memorising the probe. The halves follow a content-defined order.
    """
    build = COST_BUILDERS.get(cost_builder)
    return -cross_fitted(evidence, lambda fit, held_out: transport_cost_to_labels(
        held_out.probs, held_out.labels, build(fit)))


def cross_fitted(evidence: Evidence, measure: Callable[[Evidence, Evidence], float]) -> float:
    """The mean of measure(fit half, held-out half) over both ways of splitting the probe in two (classes
    balanced, halves in a content-defined order)."""
    evidence = evidence.subset(canonical_order(evidence))
    first, second = halves(evidence.labels)
    return float(np.mean([measure(evidence.subset(fit), evidence.subset(held_out))
                          for fit, held_out in ((first, second), (second, first)) if len(held_out)]))


@SCORERS.register("ot")
def ot_score(evidence: Evidence) -> float:
    """The paper's score with the `conditional` cost: -E_n W(p_n, delta_{y_n}; M), cross-fitted.

    (Lu, Ye, Zhan, arXiv 2204.11526.) Against one-hot labels this is a cross-fitted soft NCE.
    """
    return cross_fitted_transport_score(evidence, "conditional")


def cheap_student(fit: Evidence, held_out: Evidence, tau: float = OT_TAU) -> np.ndarray:
    """A student's prediction (n_held_out, C_S) that costs no training run: Fisher's discriminant (shrunk
    scatter) fitted on the teacher's features of one half of the probe, applied to the other half, softened
    by the distillation objective's temperature."""
    discriminant = fit_discriminant(fit.features.astype(np.float64), fit.labels)
    student = np.zeros((len(held_out.labels), held_out.num_target_classes))
    student[:, discriminant.classes] = discriminant.posteriors(held_out.features.astype(np.float64), tau)
    return student


def softened(probs: np.ndarray, tau: float = OT_TAU) -> np.ndarray:
    """softmax(t / tau) from softmax(t): p^(1/tau), renormalised."""
    powered = np.power(np.maximum(probs, 1e-300), 1.0 / tau)
    return powered / powered.sum(1, keepdims=True)


def sinkhorn_costs(teacher: np.ndarray, student: np.ndarray, cost: np.ndarray, eps: float) -> np.ndarray:
    """<T_n, M> of the entropic plan T_n between each teacher prediction p_n (C_T) and student prediction q_n
    (C_S), solved together by POT's batched log-domain Sinkhorn (floored: an exact zero has no log)."""
    floor = lambda p: (p * (1 - PROBABILITY_FLOOR) + PROBABILITY_FLOOR / p.shape[1])  # noqa: E731
    teacher, student = floor(teacher), floor(student)
    batch = np.broadcast_to(cost, (len(teacher), *cost.shape)).copy()
    result = solve_batch(batch, reg=eps, a=teacher / teacher.sum(1, keepdims=True),
                         b=student / student.sum(1, keepdims=True), method="log_sinkhorn", max_iter=200, tol=1e-6)
    return np.asarray(result.value_linear)


@SCORERS.register("ot-student")
def ot_student_score(evidence: Evidence, eps: float = OT_EPS) -> float:
    """The paper's relatedness in its own terms: minus E_n W_eps(p_n, q_n; M), the Sinkhorn transport cost
    from the teacher's prediction p_n to a student's prediction q_n (arXiv 2204.11526's abstract), not to the
    one-hot label (`ot`, where it reduces to a cross-fitted soft NCE).

    Cross-fitted: on each half of the probe the cost M (`conditional`) and a cheap student (Fisher's
    discriminant on the teacher's features) are fitted, and the cost is measured on the other half. Both
    predictions are softened by tau and solved with eps, the distillation objective's defaults, so the score
    is that objective between the teacher and a student that has learnt what the features offer.
    """
    if evidence.features is None:
        raise SelkdError("ot-student: needs the teacher's features")
    build = COST_BUILDERS.get("conditional")
    return -cross_fitted(evidence, lambda fit, held_out: float(sinkhorn_costs(
        softened(held_out.probs.astype(np.float64)), cheap_student(fit, held_out), build(fit), eps).mean()))


@SCORERS.register("ot-prototype")
def ot_prototype_score(evidence: Evidence) -> float:
    """-E_n W(p_n, delta_{y_n}; M) with the `prototype` cost (teacher classifier rows vs target class means)."""
    return cross_fitted_transport_score(evidence, "prototype")


@SCORERS.register("ot-semantic")
def ot_semantic_score(evidence: Evidence) -> float:
    """-E_n W(p_n, delta_{y_n}; M) with the `semantic` cost: does the teacher predict the label's namesake?"""
    return -transport_cost_to_labels(evidence.probs.astype(np.float64), evidence.labels,
                                     COST_BUILDERS.get("semantic")(evidence))


@SCORERS.register("semantic")
def semantic_prescreen_score(evidence: Evidence) -> float:
    """Minus how far the target's label names are from the teacher's nearest ones: names only, no forward pass.

    Semi-relaxed OT from the teacher's label names onto the target's label marginal under the semantic cost:
    the teacher's marginal is free, so each target label is carried whole by its nearest teacher label, and
    the cost is sum_j w_j min_i M[i, j]. A teacher is scored by how well its labels can cover the target's,
    whatever its label count: a 1,000-class teacher that names the target's classes scores as well as one
    that names only them (a uniform teacher marginal would spread its mass over the 997 others and sort it
    last, and under a FLOPs budget this order decides who is skipped). The free pre-screen of the scan plan.
    """
    cost = COST_BUILDERS.get("semantic")(evidence)
    return -float(target_marginal(evidence.labels, evidence.num_target_classes) @ cost.min(0))


@SCORERS.register("leep")
def leep_score(evidence: Evidence) -> float:
    """LEEP (Nguyen et al. 2020): mean log of sum_z P(y_n | z) theta(x_n)_z, with P(y|z) from the joint."""
    labels = evidence.labels
    expected = expected_empirical_prediction(evidence)[np.arange(len(labels)), labels]
    return float(np.mean(np.log(np.maximum(expected, 1e-12))))



@SCORERS.register("nce")
def nce_score(evidence: Evidence) -> float:
    """NCE (Tran et al. 2019): minus the conditional entropy H(Y | Z) with Z the teacher's hard label."""
    probs, labels, num_target_classes = evidence.probs, evidence.labels, evidence.num_target_classes
    hard = probs.argmax(1)
    joint = np.zeros((probs.shape[1], num_target_classes))
    np.add.at(joint, (hard, labels), 1.0)
    joint /= len(labels)
    marginal = joint.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / marginal), 0.0)
    return float(terms.sum())


@SCORERS.register("random")
def random_score(evidence: Evidence) -> float:
    """A deterministic random number per teacher output: the floor every real scorer must beat."""
    seed = int(content_hash(evidence.probs.astype(np.float32)[canonical_order(evidence)])[:8], 16)
    return float(np.random.default_rng(seed).random())


def score_all(names: list[str], evidence: Evidence) -> dict[str, float]:
    """Every requested scorer on one teacher's predictions; NaN where this teacher lacks a scorer's inputs
    (say, `ot-prototype` for a teacher without a linear classifier)."""
    scores = {}
    for name in names:
        if name in TASK_SCORERS:
            continue  # ranks a whole task (rankers.py), not one teacher
        try:
            scores[name] = float(SCORERS.get(name)(evidence))
        except SelkdError:
            scores[name] = float("nan")
    return scores


def needs_label_embeddings(names: list[str]) -> bool:
    """Whether any of these scorers reads label-name embeddings (so the scan must compute them)."""
    return any(name in LABEL_NAME_SCORERS for name in names)
