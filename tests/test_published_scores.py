"""The scorer fixes and the published scorers (SFDA, N-LEEP, PARC, TransRate, GBC, the student-side OT score,
the static priors), each against values worked out here another way, on small seeded inputs. No Ray."""
import numpy as np
import pytest
import scipy.linalg

from selkd_ray.scoring.costs import conditional_cost
from selkd_ray.records import Evidence
from selkd_ray.scoring.scores import SCORERS, score_all, sinkhorn_costs


def separated(per_class: int, classes: int = 3, dim: int = 6, seed: int = 0, spread: float = 0.05):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = np.eye(dim)[:classes] * 5
    return labels, centres[labels] + spread * rng.normal(size=(len(labels), dim))


# --- fixes (each failed before it) ---

def test_knn_is_right_with_two_images_per_class():
    labels, features = separated(per_class=2)
    assert SCORERS.get("knn")(Evidence(None, features, labels, 3)) == 1.0  # k = 5 fixed gave 0.0


def test_semantic_prescreen_scores_coverage_whatever_the_label_count():
    target = np.eye(1003)[:3]
    names_only = np.eye(1003)[:3]
    imagenet_like = np.eye(1003)  # the target's three names among 1,003
    unrelated = np.eye(1003)[[1000, 1001, 1002]]
    score = lambda teacher: SCORERS.get("semantic")(Evidence(  # noqa: E731
        None, None, np.arange(3), 3, teacher_label_embeddings=teacher, target_label_embeddings=target))
    assert score(imagenet_like) == score(names_only) == 0.0  # a uniform teacher marginal gave about -0.5
    assert score(unrelated) == pytest.approx(-0.5)


def test_conditional_cost_does_not_depend_on_the_probe_size():
    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(4), size=12), np.repeat(np.arange(3), 4)
    twice = conditional_cost(np.r_[probs, probs], np.r_[labels, labels], 3)
    assert twice == pytest.approx(conditional_cost(probs, labels, 3), rel=1e-12)  # an absolute count differed


# --- the published scorers against independent computations ---

def small(seed=0, n=24, dim=5, classes=3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    features = rng.normal(size=(classes, dim))[labels] + rng.normal(size=(n, dim))
    return labels, features


def test_sfda_by_the_generalised_eigenproblem():
    """Shao et al.'s steps written out: scatters, the eigenvectors of (S_b, S_w shrunk), projected class
    scores, softmax twice, ConfMix, the second pass; the scorer computes the same through S^-1."""
    labels, features = small()
    def fda(x, shrinkage=None):
        classes = np.unique(labels)
        means = np.array([x[labels == c].mean(0) for c in classes])
        priors = np.array([(labels == c).mean() for c in classes])
        within = sum(p * np.cov(x[labels == c].T, bias=True) for p, c in zip(priors, classes))
        d = x.shape[1]
        if shrinkage is None:
            shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(within)[-1]), 1e-10)
        total = np.cov(x.T, bias=True)
        shrunk_within = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
        shrunk_total = (1 - shrinkage) * total + shrinkage * np.trace(total) / d * np.eye(d)
        _, u = scipy.linalg.eigh(shrunk_total - shrunk_within, shrunk_within)
        coef = means @ u @ u.T
        scores = x @ coef.T - 0.5 * np.diag(means @ coef.T) + np.log(priors)
        e = np.exp(scores - scores.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True), shrinkage, means
    prob, shrinkage, means = fda(features)
    soft = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    mixed = features.copy()
    for c in range(3):
        others = (means.sum(0) - means[c]) / 2
        w = soft[labels == c, c][:, None]
        mixed[labels == c] = w * features[labels == c] + (1 - w) * others
    second, _, _ = fda(mixed, shrinkage)
    expected = second[np.arange(len(labels)), labels].mean()
    assert SCORERS.get("sfda")(Evidence(None, features, labels, 3)) == pytest.approx(expected, rel=1e-8)


def test_parc_by_average_ranks():
    labels, features = small(n=12, dim=3)
    f = features - features.mean(0)
    u, s, vt = np.linalg.svd(f, full_matrices=False)
    z = f @ vt.T
    z = (z - z.mean(0)) / z.std(0)  # PCA keeps all 3 axes here; flipping an axis changes row correlations,
    # so the scorer fixes each sign: largest loading positive
    z = z * np.sign(vt[np.arange(3), np.abs(vt).argmax(1)])
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12)]
    corr = lambda a, b: np.corrcoef(a, b)[0, 1]  # noqa: E731
    onehot = np.eye(3)[labels]
    df = np.array([1 - corr(z[i], z[j]) for i, j in pairs])
    dy = np.array([1 - corr(onehot[i], onehot[j]) for i, j in pairs])
    def ranks(x):  # average ranks, ties shared
        order = sorted(range(len(x)), key=lambda k: x[k])
        r = np.empty(len(x))
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and abs(x[order[j + 1]] - x[order[i]]) < 1e-12:
                j += 1
            r[[order[k] for k in range(i, j + 1)]] = (i + j) / 2
            i = j + 1
        return r
    expected = 100 * corr(ranks(df), ranks(dy))
    assert SCORERS.get("parc")(Evidence(None, features, labels, 3)) == pytest.approx(expected, rel=1e-6)


def test_transrate_by_eigenvalues():
    labels, features = small()
    eps = 1e-4
    def rate(z):
        z = np.asarray(z)
        return 0.5 * np.sum(np.log1p(np.linalg.eigvalsh(z.T @ z) / (len(z) * eps)))
    z = features - features.mean(0)
    expected = rate(z) - sum(np.mean(labels == c) * rate(z[labels == c]) for c in range(3))
    assert SCORERS.get("transrate")(Evidence(None, features, labels, 3)) == pytest.approx(expected, rel=1e-9)


def test_gbc_by_hand_in_one_dimension():
    features = np.array([[0.0], [2.0], [4.0], [8.0]])
    labels = np.array([0, 0, 1, 1])
    # class 0: mean 1, unbiased variance 2; class 1: mean 6, variance 8; average variance 5
    distance = (1 - 6) ** 2 / 5 / 8 + 0.5 * (np.log(5) - 0.5 * np.log(2) - 0.5 * np.log(8))
    assert SCORERS.get("gbc")(Evidence(None, features, labels, 2)) == pytest.approx(-2 * np.exp(-distance))


def test_nleep_reads_clusters_not_the_teacher_head():
    labels, clustered = separated(per_class=10)
    noise = np.random.default_rng(1).normal(size=clustered.shape)
    nleep = SCORERS.get("nleep")
    assert nleep(Evidence(None, clustered, labels, 3)) > -0.05  # log 1: every component belongs to one class
    assert nleep(Evidence(None, noise, labels, 3)) < -0.3
    assert np.isfinite(nleep(Evidence(None, *separated(per_class=2)[::-1], 3)))  # fewer samples than 5 per class


def test_sinkhorn_costs_match_plain_iterations():
    rng = np.random.default_rng(0)
    p, q, cost = rng.dirichlet(np.ones(4), 3), rng.dirichlet(np.ones(2), 3), rng.random((4, 2))
    eps = 0.05
    expected = []
    for a, b in zip(p, q):
        kernel, v = np.exp(-cost / eps), np.ones(2)
        for _ in range(5000):
            u = a / (kernel @ v)
            v = b / (kernel.T @ u)
        expected.append(np.sum(u[:, None] * kernel * v[None] * cost))
    assert sinkhorn_costs(p, q, cost, eps) == pytest.approx(expected, abs=1e-4)


def test_ot_student_prefers_a_teacher_whose_predictions_follow_the_classes():
    labels, features = separated(per_class=8)
    follows = np.full((24, 5), 0.02)
    follows[np.arange(24), labels + 1] = 0.92
    ignores = np.random.default_rng(0).dirichlet(np.ones(5), 24)
    score = SCORERS.get("ot-student")
    assert score(Evidence(follows, features, labels, 3)) > score(Evidence(ignores, features, labels, 3))


def test_static_priors_read_no_probe():
    bare = Evidence(None, None, np.array([0, 1]), 2, param_count=1_000_000, flops_per_sample=10 ** 9)
    assert SCORERS.get("params")(bare) == pytest.approx(6.0) and SCORERS.get("flops")(bare) == pytest.approx(9.0)
    unknown = score_all(["params", "flops"], Evidence(None, None, np.array([0, 1]), 2))
    assert all(np.isnan(v) for v in unknown.values())


def test_nleep_is_leep_over_the_mixture_posteriors_by_hand():
    """The mixture is scikit-learn's (PCA to 80% variance, 5 diagonal components per class, seeded); what
    N-LEEP adds is LEEP over its posteriors, written out here term by term."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from selkd_ray.scoring.scores import canonical_order

    labels, features = small(n=30, dim=6)
    evidence = Evidence(None, features, labels, 3)
    ordered = evidence.subset(canonical_order(evidence))
    reduced = PCA(n_components=0.8, svd_solver="full").fit_transform(ordered.features)
    posterior = GaussianMixture(15, covariance_type="diag", reg_covar=1e-4, random_state=0).fit(
        reduced).predict_proba(reduced)
    n, y = len(labels), ordered.labels
    joint = np.zeros((15, 3))
    for i in range(n):
        joint[:, y[i]] += posterior[i] / n
    expected = np.mean([np.log(sum(posterior[i, z] * joint[z, y[i]] / joint[z].sum() for z in range(15)))
                        for i in range(n)])
    assert SCORERS.get("nleep")(evidence) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("images, dim", [(15, 64), (15, 2048), (40, 512)])
def test_the_discriminant_on_a_probe_smaller_than_its_features_is_the_d_by_d_one(images, dim):
    """n < d: the largest eigenvalue and trace from the n x n Gram matrix and S^-1 mu by Woodbury (issue 28);
    the same scores as the scatter matrices written out and solved at d x d (as SFDA's test writes them)."""
    from selkd_ray.scoring.discriminant import fit_discriminant

    rng = np.random.default_rng(dim)
    labels = np.repeat(np.arange(3), images // 3)
    scale = np.sqrt(64 / dim)  # the scatter's spectrum as at 64-d, so the d x d reference solve stays accurate
    features = (rng.normal(size=(len(labels), dim)) * 0.3 + labels[:, None] * rng.normal(size=dim) * 0.5) * scale
    classes = np.unique(labels)
    means = np.array([features[labels == c].mean(0) for c in classes])
    priors = np.array([(labels == c).mean() for c in classes])
    within = sum(p * np.cov(features[labels == c].T, bias=True) for p, c in zip(priors, classes))
    shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(within)[-1]), 1e-10)
    shrunk = (1 - shrinkage) * within + shrinkage * np.trace(within) / dim * np.eye(dim)
    coef = np.linalg.solve(shrunk, means.T)
    expected = features @ coef - 0.5 * np.sum(means.T * coef, 0) + np.log(priors)
    fitted = fit_discriminant(features, labels)
    assert fitted.shrinkage == pytest.approx(shrinkage, rel=1e-9)
    assert np.allclose(features @ fitted.weights + fitted.bias, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())
    fixed = fit_discriminant(features, labels, 0.3)  # a given shrinkage (SFDA's second pass) takes the same path
    coef = np.linalg.solve(0.7 * within + 0.3 * np.trace(within) / dim * np.eye(dim), means.T)
    assert np.allclose(fixed.weights, coef, rtol=1e-7, atol=1e-9 * np.abs(coef).max())


@pytest.mark.parametrize("images, dim", [(15, 64), (15, 1024), (60, 40)])
def test_hscore_and_transrate_with_fewer_images_than_features_are_the_d_by_d_formulas(images, dim):
    """n < d: H-score's shrunk covariance solved by Woodbury and TransRate's determinants at n x n (issue 28);
    the same values as the d x d formulas written out (Ledoit-Wolf as in their paper, log det of I_d + ...)."""
    rng = np.random.default_rng(dim)
    labels = np.repeat(np.arange(3), images // 3)
    features = (rng.normal(size=(len(labels), dim)) + labels[:, None] * rng.normal(size=dim)) * np.sqrt(64 / dim)
    f = features - features.mean(0)
    n, d = f.shape
    sample = f.T @ f / n
    mu = np.trace(sample) / d
    delta = np.sum((sample - mu * np.eye(d)) ** 2) / d
    beta = (np.sum(np.sum(f ** 2, 1) ** 2) - n * np.sum(sample ** 2)) / (n * n * d)
    shrinkage = min(beta, delta) / delta
    shrunk = (1 - shrinkage) * sample + shrinkage * mu * np.eye(d)
    means = np.stack([f[labels == c].mean(0) for c in labels])
    expected = np.trace(np.linalg.inv(shrunk) @ (means.T @ means / n))
    assert SCORERS.get("hscore")(Evidence(None, features, labels, 3)) == pytest.approx(expected, rel=1e-8)

    def rate(z, eps=1e-4):
        return 0.5 * np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))[1]
    expected = rate(f) - sum((labels == c).mean() * rate(f[labels == c]) for c in range(3))
    assert SCORERS.get("transrate")(Evidence(None, features, labels, 3)) == pytest.approx(expected, rel=1e-8)
