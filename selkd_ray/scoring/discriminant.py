"""Fisher's linear discriminant with a shrunk within-class scatter: SFDA's projection, and the cheap student
the student-side OT score fits on a teacher's features. Pure numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SFDA_STRENGTH = 5.0  # lambda = exp(-5 * largest eigenvalue of the within-class scatter) (Shao et al. 2022)


@dataclass(frozen=True)
class Discriminant:
    """Class scores x @ weights + bias over `classes` (the labels present when it was fitted)."""

    weights: np.ndarray  # (d, classes)
    bias: np.ndarray  # (classes,)
    classes: np.ndarray
    shrinkage: float

    def posteriors(self, features: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return softmax((features @ self.weights + self.bias) / temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def class_means(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the classes present, their mean features (classes, d))."""
    classes = np.unique(labels)
    return classes, np.stack([features[labels == c].mean(0) for c in classes])


def fit_discriminant(features: np.ndarray, labels: np.ndarray, shrinkage: float | None = None) -> Discriminant:
    """S_w = sum_c pi_c Cov_c; S = (1 - lam) S_w + lam (tr S_w / d) I with lam = exp(-5 sigma_max(S_w)) unless
    given (SFDA's adaptive regularisation: strong where the scatter is small). Scores
    x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c. SFDA writes them through every generalised eigenvector U
    of (S_b, S), as x^T U U^T mu_c; with U^T S U = I that is U U^T = S^-1, so S_b drops out."""
    classes, means = class_means(features, labels)
    index = np.searchsorted(classes, labels)
    priors = np.bincount(index).astype(np.float64) / len(labels)
    centred = features - means[index]
    within = sum(priors[c] * np.cov(centred[index == c].T, bias=True).reshape(features.shape[1], -1)
                 for c in range(len(classes)))
    dim = features.shape[1]
    if shrinkage is None:
        shrinkage = max(float(np.exp(-SFDA_STRENGTH * np.linalg.eigvalsh(within).max())), 1e-10)
    shrunk = (1 - shrinkage) * within + shrinkage * np.trace(within) / dim * np.eye(dim)
    weights = np.linalg.lstsq(shrunk, means.T, rcond=None)[0]  # S^-1 mu_c
    bias = -0.5 * np.sum(means.T * weights, 0) + np.log(priors)
    return Discriminant(weights, bias, classes, shrinkage)
