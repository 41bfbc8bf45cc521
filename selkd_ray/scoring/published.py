"""The strongest published transferability scores on a teacher's features, and two static priors.

Each is written from its paper's formula (higher = better teacher), registered beside the others in
`registry.SCORERS`, and reads nothing but the teacher's Evidence:
    sfda       Shao et al., ECCV 2022: self-challenging Fisher discriminant analysis
    nleep      Li et al., CVPR 2021: LEEP over a Gaussian mixture of the features
    parc       Bolya et al., NeurIPS 2021: pairwise feature / label dissimilarity agreement
    transrate  Huang et al., ICML 2022: coding rate of the features less that within each class
    gbc        Pandy et al., CVPR 2022: minus the Bhattacharyya overlap of per-class Gaussians
    params, flops   no probe at all: how big the teacher is, a check that a benchmark is not degenerate
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .discriminant import class_means, fit_discriminant, smaller_gram, softmax
from ..errors import SelkdError
from ..records import Evidence
from .registry import SCORERS
from .scores import canonical_order, leep_score

PARC_DIMS = 32  # Bolya et al. reduce features to 32 dimensions before comparing
GBC_DIMS = 64  # Pandy et al. reduce to 64
GBC_VARIANCE_FLOOR = 1e-4
TRANSRATE_EPS = 1e-4  # the distortion epsilon of Huang et al.
NLEEP_COMPONENTS_PER_CLASS = 5  # Li et al.'s mixture size: five components per target class
NLEEP_VARIANCE_KEPT = 0.8  # PCA keeps 80% of the variance before the mixture is fitted


def features_of(evidence: Evidence) -> np.ndarray:
    if evidence.features is None:
        raise SelkdError("this scorer needs the teacher's features")
    return evidence.features.astype(np.float64)


def principal_components(features: np.ndarray, dims: int) -> np.ndarray:
    """The centred features projected on their first `dims` principal axes (fewer when rank allows fewer).
    Signs follow each axis's largest loading, so the result does not depend on the SVD's sign choice."""
    centred = features - features.mean(0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    keep = min(dims, int((singular > 1e-10 * max(singular.max(initial=0.0), 1e-300)).sum()))
    axes = axes[:keep]
    axes *= np.sign(axes[np.arange(keep), np.abs(axes).argmax(1)])[:, None]
    return centred @ axes.T


@SCORERS.register("sfda")
def sfda_score(evidence: Evidence) -> float:
    """SFDA (Shao et al. 2022): mean p(y_n | x_n) of a regularised Fisher discriminant after ConfMix.

    First pass: shrunk-LDA posteriors p, softened once more by a softmax. ConfMix challenges the easy samples:
    x_n <- p_y(x_n) x_n + (1 - p_y(x_n)) mean of the other classes' means, so a sample the projection already
    separates is pulled hardest towards the other classes. Second pass on the mixed features (same shrinkage);
    the score is the mean posterior of the true class (no log, as the paper)."""
    features, labels = features_of(evidence), evidence.labels
    classes, means = class_means(features, labels)
    if len(classes) < 2:
        raise SelkdError("sfda: needs two classes on the probe")
    index, rows = np.searchsorted(classes, labels), np.arange(len(labels))
    first = fit_discriminant(features, labels)
    softened = softmax(first.posteriors(features))[rows, index][:, None]
    others = (means.sum(0) - means) / (len(means) - 1)
    mixed = softened * features + (1 - softened) * others[index]
    second = fit_discriminant(mixed, labels, first.shrinkage)
    return float(second.posteriors(mixed)[rows, index].mean())


@SCORERS.register("nleep")
def nleep_score(evidence: Evidence) -> float:
    """N-LEEP (Li et al. 2021): LEEP with the teacher's softmax replaced by the posteriors of a Gaussian
    mixture (five components per target class, at most one per sample) fitted to the features after PCA
    keeps 80% of their variance: the teacher's own label space plays no part."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    evidence = evidence.subset(canonical_order(evidence))  # the mixture's start depends on the sample order
    features, labels = features_of(evidence), evidence.labels
    reduced = PCA(n_components=NLEEP_VARIANCE_KEPT, svd_solver="full").fit_transform(features)
    components = min(NLEEP_COMPONENTS_PER_CLASS * len(np.unique(labels)), len(labels))
    mixture = GaussianMixture(components, covariance_type="diag", reg_covar=1e-4, random_state=0).fit(reduced)
    return leep_score(Evidence(mixture.predict_proba(reduced), None, labels, evidence.num_target_classes))


@SCORERS.register("parc")
def parc_score(evidence: Evidence) -> float:
    """PARC (Bolya et al. 2021): 100 x the Spearman correlation between the pairwise dissimilarities of the
    samples' features (1 - Pearson correlation, features standardised, 32 principal dimensions) and those of
    their one-hot labels, over every pair once."""
    features = principal_components(features_of(evidence), PARC_DIMS)
    spread = features.std(0)
    features = (features - features.mean(0)) / np.where(spread > 0, spread, 1.0)
    upper = np.triu_indices(len(features), 1)
    feature_distance = (1 - np.corrcoef(features))[upper]
    # 1 - Pearson of two one-hot rows of length C is 0 for one class and C / (C - 1) for two, written exactly:
    # computed, the zeros come out as 0 or 2e-16, and ranks would split those ties by rounding noise
    classes = evidence.num_target_classes
    label_distance = np.where(evidence.labels[upper[0]] == evidence.labels[upper[1]], 0.0, classes / (classes - 1))
    return float(100 * spearmanr(feature_distance, label_distance).statistic)


def coding_rate(features: np.ndarray, eps: float = TRANSRATE_EPS) -> float:
    """R(Z, eps) = 1/2 log det(I_d + Z^T Z / (n eps)): bits to code Z up to distortion eps. With fewer images
    than features, the same determinant as log det(I_n + Z Z^T / (n eps)) (Sylvester): an n x n matrix."""
    n = len(features)
    gram = smaller_gram(features)
    _, logdet = np.linalg.slogdet(np.eye(len(gram)) + gram / (n * eps))
    return 0.5 * float(logdet)


@SCORERS.register("transrate")
def transrate_score(evidence: Evidence) -> float:
    """TransRate (Huang et al. 2022): R(Z, eps) - R(Z, eps | Y), the coding rate of the centred features less
    the class-weighted rate within each class (sum_y n_y / n R(Z_y, eps)): high when the classes need little
    beyond their own code."""
    features, labels = features_of(evidence), evidence.labels
    features = features - features.mean(0)
    within = sum((labels == c).mean() * coding_rate(features[labels == c]) for c in np.unique(labels))
    return coding_rate(features) - within


def bhattacharyya_distance(mean_a: np.ndarray, var_a: np.ndarray, mean_b: np.ndarray, var_b: np.ndarray) -> float:
    """Between two diagonal Gaussians: 1/8 (mu_a - mu_b)^T S^-1 (mu_a - mu_b) + 1/2 ln(det S / sqrt(det S_a det
    S_b)), S = (S_a + S_b) / 2."""
    average = (var_a + var_b) / 2
    separation = float(np.sum((mean_a - mean_b) ** 2 / average)) / 8
    overlap = float(np.sum(np.log(average)) - 0.5 * np.sum(np.log(var_a)) - 0.5 * np.sum(np.log(var_b))) / 2
    return separation + overlap


@SCORERS.register("gbc")
def gbc_score(evidence: Evidence) -> float:
    """GBC (Pandy et al. 2022): minus the sum over ordered pairs of target classes of the Bhattacharyya
    coefficient exp(-D_B) between their diagonal Gaussians (64 principal dimensions; variances unbiased,
    floored at 1e-4): 0 when every class stands apart."""
    features, labels = principal_components(features_of(evidence), GBC_DIMS), evidence.labels
    stats = []
    for c in np.unique(labels):
        members = features[labels == c]
        variance = members.var(0, ddof=1) if len(members) > 1 else np.zeros(features.shape[1])
        stats.append((members.mean(0), np.maximum(variance, GBC_VARIANCE_FLOOR)))
    return -float(sum(np.exp(-bhattacharyya_distance(*a, *b)) for i, a in enumerate(stats)
                      for j, b in enumerate(stats) if i != j))


@SCORERS.register("params")
def parameter_count_prior(evidence: Evidence) -> float:
    """log10 of the teacher's parameter count: bigger is assumed better. Reads no probe."""
    if evidence.param_count <= 0:
        raise SelkdError("params: the teacher's parameter count is unknown")
    return float(np.log10(evidence.param_count))


@SCORERS.register("flops")
def flops_prior(evidence: Evidence) -> float:
    """log10 of the teacher's forward FLOPs per sample: more compute is assumed better. Reads no probe."""
    if evidence.flops_per_sample <= 0:
        raise SelkdError("flops: the teacher's forward FLOPs are unknown")
    return float(np.log10(evidence.flops_per_sample))
