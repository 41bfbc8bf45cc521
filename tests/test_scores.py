"""OT score, cost matrix and baselines against hand-computed values (pure maths, no Ray)."""
from dataclasses import replace

import numpy as np
import pytest

from selkd_ray.scoring.costs import FLOOR, SMOOTHING, conditional_cost, label_plan
from selkd_ray.records import Evidence
from selkd_ray.scoring.registry import PREDICTION_FREE_SCORERS, TASK
from selkd_ray.scoring.scores import SCORERS, leep_score, nce_score, ot_score, transport_cost_to_labels

# the scorers of one teacher's Evidence; the task scorers (aggregate, learned) have their own tests (test_rankers)
TEACHER_SCORERS = [name for name in SCORERS.names() if name not in SCORERS.tagged(TASK)]


def test_transport_cost_to_labels_matches_hand_computation():
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    labels = np.array([0, 1, 0])
    cost = np.array([[0.0, 1.0], [2.0, 0.5]])
    # W(p, delta_y; M) = sum_i p[i] M[i, y]
    by_hand = np.mean([0.8 * 0.0 + 0.2 * 2.0, 0.3 * 1.0 + 0.7 * 0.5, 0.5 * 0.0 + 0.5 * 2.0])
    assert transport_cost_to_labels(probs, labels, cost) == pytest.approx(by_hand)


def test_conditional_cost_matches_formula():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 1, 1])
    cost = conditional_cost(probs, labels, 2)
    a = SMOOTHING * 3 / (2 * 2)  # a fraction of the mean cell count: 3 samples over 2 x 2 cells
    p_row0 = np.array([1.0 + a, 0.5 + a]) / (1.5 + 2 * a)  # teacher class 0: mass 1.5, 1.0 on label 0
    assert cost[0] == pytest.approx(-np.log(p_row0) / np.log(1 / FLOOR))
    assert cost.shape == (2, 2) and np.all(cost >= 0)


def test_label_plan_has_the_marginals():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=30)
    labels = rng.integers(0, 3, 30)
    plan = label_plan(probs, labels, conditional_cost(probs, labels, 3))
    assert plan.sum(1) == pytest.approx(probs.mean(0) / probs.mean(0).sum(), abs=1e-9)
    assert plan.sum(0) == pytest.approx(np.bincount(labels, minlength=3) / 30, abs=1e-9)


def test_leep_and_nce_by_hand():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 0])
    # P(y|z=0) = (1, 0); P(y|z=1) = (0.5, 0.5)
    assert leep_score(Evidence(probs, None, labels, 2)) == pytest.approx(np.mean(np.log([1.0, 0.5, 1.0, 0.5])))
    # H(Y|Z) = 0.5 * 0 + 0.5 * log 2
    assert nce_score(Evidence(probs, None, labels, 2)) == pytest.approx(-0.5 * np.log(2))


def informative_and_useless(seed=0, n=60, classes=3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    informative = np.full((n, 5), 0.02)
    informative[np.arange(n), labels + 1] = 0.92
    useless = rng.dirichlet(np.ones(5), size=n)
    return labels, informative / informative.sum(1, keepdims=True), useless


@pytest.mark.parametrize("name", TEACHER_SCORERS)
def test_every_scorer_is_deterministic(name):
    labels, informative, _ = informative_and_useless()
    features = np.random.default_rng(1).normal(size=(len(labels), 4))
    evidence = with_extras(Evidence(informative, features, labels, 3), good=True)
    assert SCORERS.get(name)(evidence) == SCORERS.get(name)(evidence)


def test_ot_score_is_cross_fitted():
    """A teacher that memorised the probe with arbitrary classes gains nothing from it."""
    labels = np.repeat(np.arange(3), 10)
    memoriser = np.eye(30)  # one teacher class per probe image: perfect on the fitting half, useless elsewhere
    labels_informative, informative, _ = informative_and_useless(n=30)
    assert ot_score(Evidence(memoriser, None, labels, 3)) < ot_score(Evidence(informative, None, labels_informative, 3))


def test_registry_rejects_duplicates_and_unknown_names():
    from selkd_ray.errors import SelkdError

    with pytest.raises(ValueError):
        SCORERS.register("ot")(lambda evidence: 0.0)
    with pytest.raises(SelkdError, match="unknown scorer 'nope'"):
        SCORERS.get("nope")


def realistic_pair(seed=0, n=45, classes=3, dim=8):
    """Features and predictions that carry the label (good) and ones that do not (bad)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centres = rng.normal(size=(classes, dim)) * 3
    good_features = centres[labels] + rng.normal(size=(n, dim))
    bad_features = rng.normal(size=(n, dim))
    _, good_probs, bad_probs = informative_and_useless(seed, n, classes)
    good = with_extras(Evidence(good_probs, good_features, labels, classes), good=True, centres=centres)
    bad = with_extras(Evidence(bad_probs, bad_features, labels, classes), good=False)
    return labels, good, bad


def with_extras(evidence, good, centres=None, teacher_classes=5, seed=3):
    """Classifier rows and label-name vectors: teacher class j+1 points at target class j (good) or anywhere (bad)."""
    rng = np.random.default_rng(seed)
    dim = evidence.features.shape[1]
    classifier = rng.normal(size=(teacher_classes, dim))
    if good and centres is not None:
        classifier[1:1 + len(centres)] = centres
    target_vectors = np.eye(8)[: evidence.num_target_classes]
    teacher_vectors = np.eye(8)[[7, 0, 1, 2, 6]] if good else np.eye(8)[[3, 4, 5, 6, 7]]
    return replace(evidence, classifier=classifier, teacher_label_embeddings=teacher_vectors,
                   target_label_embeddings=target_vectors, param_count=2_000_000, flops_per_sample=30_000_000)


PREDICTIVE = [n for n in TEACHER_SCORERS if n != "random" and n not in PREDICTION_FREE_SCORERS]


@pytest.mark.parametrize("name", PREDICTIVE)
def test_contract_prefers_predictive_teacher_with_features(name):
    labels, good, bad = realistic_pair()
    scorer = SCORERS.get(name)
    assert scorer(good) > scorer(bad)


@pytest.mark.parametrize("name", TEACHER_SCORERS)
def test_contract_finite_and_invariant_to_sample_order(name):
    labels, good, _ = realistic_pair(seed=1)
    order = np.random.default_rng(5).permutation(len(labels))
    scorer = SCORERS.get(name)
    value = scorer(good)
    assert np.isfinite(value)
    assert scorer(good.subset(order)) == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_h_score_by_hand():
    # one feature: class means -1 / +1, within-class spread 0 -> cov(E[f|y]) = cov(f), H = 1
    features = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    assert SCORERS.get("hscore")(Evidence(None, features, np.array([0, 0, 1, 1]), 2)) == pytest.approx(1.0)


def test_knn_by_hand():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.95, 0.05]])
    labels = np.array([0, 0, 1, 1, 1])
    # the last point (class 1) sits among class 0: it is the nearest neighbour of both class-0 points, and
    # its own nearest neighbour is class 0, so three of five leave-one-out votes are wrong
    assert SCORERS.get("knn")(Evidence(None, features, labels, 2), k=1) == pytest.approx(2 / 5)


def test_logme_prefers_features_that_carry_the_label_linearly():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    linear = np.c_[labels + 0.1 * rng.normal(size=100), rng.normal(size=(100, 3))]
    noise = rng.normal(size=(100, 4))
    logme = SCORERS.get("logme")
    assert logme(Evidence(None, linear, labels, 2)) > logme(Evidence(None, noise, labels, 2))


def test_prototype_cost_by_hand():
    from selkd_ray.scoring.costs import prototype_cost

    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    classifier = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])  # teacher classes: up, right, left
    cost = prototype_cost(Evidence(None, features, np.array([0, 0, 1]), 2, classifier=classifier))
    # target 0 sits right, target 1 up: (1 - cos) / 2
    assert cost == pytest.approx(np.array([[0.5, 0.0], [0.0, 0.5], [1.0, 0.5]]))


def test_semantic_cost_and_prescreen_by_hand():
    from selkd_ray.scoring.costs import semantic_cost

    target = np.eye(3)[:2]
    covering = np.eye(3)[[0, 1]]  # the teacher's two names are the target's
    partial = np.eye(3)[[0, 2]]  # one name matches, one is orthogonal (cos 0 -> cost 1/2)
    ev = lambda t: Evidence(None, None, np.array([0, 1]), 2, teacher_label_embeddings=t, target_label_embeddings=target)
    assert semantic_cost(ev(partial)) == pytest.approx(np.array([[0.0, 0.5], [0.5, 0.5]]))
    prescreen = SCORERS.get("semantic")
    assert prescreen(ev(covering)) == pytest.approx(0.0)
    assert prescreen(ev(partial)) == pytest.approx(-0.25)  # half the mass moves at cost 1/2


def test_builders_that_lack_their_inputs_say_so():
    from selkd_ray.errors import SelkdError

    bare = Evidence(np.full((2, 2), 0.5), np.ones((2, 3)), np.array([0, 1]), 2)
    with pytest.raises(SelkdError, match="classifier"):
        SCORERS.get("ot-prototype")(bare)
    with pytest.raises(SelkdError, match="embeddings"):
        SCORERS.get("ot-semantic")(bare)
