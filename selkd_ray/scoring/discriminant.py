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
    of (S_b, S), as x^T U U^T mu_c; with U^T S U = I that is U U^T = S^-1, so S_b drops out.

    A probe has far fewer images than features (15 against 2,048, say), and S_w = X^T X / n for the
    within-class centred features X (n, d) has rank below n: its largest eigenvalue and trace come from the
    n x n Gram matrix, and S^-1 mu from the Woodbury identity (`within_solve`), at O(n^2 d) instead of the
    O(d^3) of a d x d eigen-decomposition and solve; the same discriminant (tested against the d x d path)."""
    classes, means = class_means(features, labels)
    index = np.searchsorted(classes, labels)
    priors = np.bincount(index).astype(np.float64) / len(labels)
    centred = features - means[index]
    n, dim = centred.shape
    small = smaller_gram(centred) / n  # S_w = sum_c pi_c Cov_c where n >= d, else its nonzero spectrum
    largest, trace = float(np.linalg.eigvalsh(small).max()), float(np.trace(small))
    if shrinkage is None:
        shrinkage = max(float(np.exp(-SFDA_STRENGTH * largest)), 1e-10)
    ridge = shrinkage * trace / dim
    if n < dim and ridge > 0:
        weights = within_solve(centred, 1 - shrinkage, ridge, means.T)
    else:
        within = small if n >= dim else centred.T @ centred / n
        shrunk = (1 - shrinkage) * within + ridge * np.eye(dim)
        weights = np.linalg.lstsq(shrunk, means.T, rcond=None)[0]  # S^-1 mu_c
    bias = -0.5 * np.sum(means.T * weights, 0) + np.log(priors)
    return Discriminant(weights, bias, classes, shrinkage)


def smaller_gram(x: np.ndarray) -> np.ndarray:
    """X X^T or X^T X, whichever is smaller: both have the same nonzero eigenvalues (so the same trace, largest
    eigenvalue, Frobenius norm and det(I + .)), and a probe of n images has n x n where d >> n."""
    return x @ x.T if x.shape[0] < x.shape[1] else x.T @ x


def within_solve(centred: np.ndarray, scale: float, ridge: float, right: np.ndarray) -> np.ndarray:
    """S^-1 B for S = scale X^T X / n + ridge I (X: (n, d), ridge > 0), by the Woodbury identity:
    S^-1 = (I - X^T (ridge n / scale I_n + X X^T)^-1 X) / ridge; only an n x n system is solved."""
    n = centred.shape[0]
    if scale <= 0:
        return right / ridge
    inner = ridge * n / scale * np.eye(n) + centred @ centred.T
    return (right - centred.T @ np.linalg.solve(inner, centred @ right)) / ridge
