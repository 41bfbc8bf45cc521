"""Scores read from a teacher's features alone (higher = better teacher): LogME, H-score and leave-one-out kNN,
registered by name in `registry.SCORERS` beside the prediction scorers of `scores.py`.

With a probe smaller than the feature dimension (n < d, the usual case) each works on n x n matrices (the Gram
spectrum, the Woodbury identity), never a d x d one: a scorer must cost little beside the forward pass it scores.
"""
from __future__ import annotations

import numpy as np

from .discriminant import smaller_gram, within_solve
from ..records import Evidence
from .registry import SCORERS


def gram_spectrum(f: np.ndarray, tol: float = 1e-10):
    """(sigma, y -> U^T y) for F = U diag(sqrt(sigma)) V^T, from the eigendecomposition of the smaller Gram
    matrix (F^T F or F F^T): the thin SVD's numbers at a fraction of its cost when n and d differ."""
    n, d = f.shape
    if n >= d:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > tol * max(float(sigma.max()), 1e-300)
        sigma, v = sigma[keep], v[:, keep]
        scale = np.sqrt(sigma)
        return sigma, lambda y: (v.T @ (f.T @ y)) / scale
    sigma, u = np.linalg.eigh(f @ f.T)
    keep = sigma > tol * max(float(sigma.max()), 1e-300)
    sigma, u = sigma[keep], u[:, keep]
    return sigma, lambda y: u.T @ y


@SCORERS.register("logme")
def logme_score(evidence: Evidence) -> float:
    """LogME (You et al. 2021): per-sample log marginal evidence of a Bayesian linear model on the features.

    For each class k (one-hot target y_k), with F = U diag(s) V^T and sigma = s^2, the prior precision alpha
    and noise precision beta are found by MacKay's fixed-point updates, and the evidence is
    n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 |y - F m|^2 - alpha/2 |m|^2 - 1/2 log|alpha I + beta F^T F|.
    The score is the mean over classes of evidence / n.
    """
    labels, num_target_classes = evidence.labels, evidence.num_target_classes
    f = evidence.features.astype(np.float64)
    n, d = f.shape
    sigma, project = gram_spectrum(f)
    evidences = []
    for k in range(num_target_classes):
        y = (labels == k).astype(np.float64)
        x2 = project(y) ** 2
        outside = max(float(y @ y - x2.sum()), 0.0)  # the part of y outside the features' span
        alpha, beta = 1.0, 1.0
        for _ in range(100):
            t = max(alpha / beta, 1e-12)
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
            res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + outside
            alpha, beta = max(gamma, 1e-12) / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t < 1e-3:
                break
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (n * np.log(beta) + d * np.log(alpha) - n * np.log(2 * np.pi)
                    - beta * res2 - alpha * m2 - log_det) / 2
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def ledoit_wolf_weight(centred: np.ndarray) -> tuple[float, float]:
    """(the Ledoit-Wolf (2004) shrinkage weight, the target's scale mu = tr(S) / d) of the sample covariance
    S = X^T X / n, from the n x n Gram matrix where n < d (S's nonzero spectrum is the Gram matrix's)."""
    n, d = centred.shape
    small = smaller_gram(centred) / n
    trace, squares = float(np.trace(small)), float(np.sum(small ** 2))  # tr S and ||S||_F^2
    mu = trace / d
    delta = (squares - 2 * mu * trace + mu * mu * d) / d  # ||S - mu I||_F^2 / d
    beta = (np.sum(np.sum(centred ** 2, 1) ** 2) - n * squares) / (n * n * d)
    return (min(beta, delta) / delta if delta > 0 else 1.0), mu


def ledoit_wolf_covariance(centred: np.ndarray) -> np.ndarray:
    """Covariance shrunk towards a scaled identity with the Ledoit-Wolf (2004) weight: invertible when d >= n."""
    n, d = centred.shape
    shrinkage, mu = ledoit_wolf_weight(centred)
    return (1 - shrinkage) * centred.T @ centred / n + shrinkage * mu * np.eye(d)


@SCORERS.register("hscore")
def h_score(evidence: Evidence) -> float:
    """H-score (Bao et al. 2019): tr(cov(f)^-1 cov(E[f | y])), how well class-conditional means separate.

    cov(f) is shrunk (Ledoit-Wolf), as Ibrahim et al. 2022 recommend: with a probe smaller than the feature
    dimension the plain estimate is singular and every teacher scores C_S - 1. There, with n < d,
    tr(S^-1 M^T M) / n = tr(M S^-1 M^T) / n by the Woodbury identity (`discriminant.within_solve`): n x n
    algebra instead of a d x d inverse.
    """
    features, labels = evidence.features.astype(np.float64), evidence.labels
    f = features - features.mean(0)
    class_means = np.zeros_like(f)
    for k in np.unique(labels):
        class_means[labels == k] = f[labels == k].mean(0)
    n, d = f.shape
    shrinkage, mu = ledoit_wolf_weight(f)
    if n < d and shrinkage * mu > 0:
        solved = within_solve(f, 1 - shrinkage, shrinkage * mu, class_means.T)  # S^-1 M^T
        return float(np.sum(class_means.T * solved) / n)
    cov_g = class_means.T @ class_means / n
    return float(np.trace(np.linalg.pinv(ledoit_wolf_covariance(f), hermitian=True) @ cov_g))


@SCORERS.register("knn")
def knn_score(evidence: Evidence, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (cosine similarity) on the teacher's features.

    k is capped at the smallest class's size less one (at least 1): with 2 images per class (the first
    halving round) a sample has one same-class neighbour, and a fixed k = 5 let the other classes outvote it
    even for perfectly separated features. Tied votes go to the class of the more similar neighbours."""
    labels, num_target_classes = evidence.labels, evidence.num_target_classes
    f = evidence.features.astype(np.float32)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    similarity = f @ f.T
    np.fill_diagonal(similarity, -np.inf)
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    k = max(1, min(k, smallest - 1, len(labels) - 1))
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # the k most similar, in any order
    rows = np.repeat(np.arange(len(labels)), k)
    votes = np.zeros((len(labels), num_target_classes))
    weight = 1.0 + 1e-3 * similarity[rows, neighbours.ravel()]  # a whole vote each; similarity breaks ties
    np.add.at(votes, (rows, labels[neighbours].ravel()), weight)
    return float(np.mean(votes.argmax(1) == labels))
