"""Several teachers at once, the pure parts: weights by hand, the mixture's data, its place in the race."""
import math

import numpy as np
import pytest

from selkd_ray.errors import SelkdError
from selkd_ray.mixture import (check_mixture, describe, members_of, mixture_name, parse_weights,
                               score_weights)
from selkd_ray.selection import LABELS_ONLY, SelectConfig, candidates
from selkd_ray.training.data import StudentData


def test_score_weights_are_a_softmax_of_standardised_scores_by_hand():
    everything = [3.0, 1.0, 0.0, -2.0]
    mean, std = np.mean(everything), np.std(everything)
    z = [(3.0 - mean) / std, (1.0 - mean) / std]
    expected = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    assert score_weights([3.0, 1.0], everything, 1.0) == pytest.approx(expected)
    hot, cold = score_weights([3.0, 1.0], everything, 100.0), score_weights([3.0, 1.0], everything, 0.01)
    assert hot == pytest.approx((0.5, 0.5), abs=0.01) and cold[0] == pytest.approx(1.0)  # the temperature's ends
    assert score_weights([1.0, 1.0], [1.0, 1.0], 1.0) == (0.5, 0.5)  # scores that do not vary: equal


def test_given_weights_are_checked_and_normalised():
    assert check_mixture(["a", "b"], (3.0, 1.0), "ot") == (0.75, 0.25)
    assert check_mixture(["a", "b", "c"], None, "ot") == pytest.approx((1 / 3,) * 3)
    for members, weights, loss, message in [(["a", "a"], None, "ot", "given twice"),
                                            (["a", "b"], (1.0,), "ot", "1 weight"),
                                            (["a", "b"], (-1.0, 2.0), "ot", "non-negative"),
                                            (["a", "b"], (0.0, 0.0), "ot", "positive sum"),
                                            (["a", "b"], (math.nan, 1.0), "ot", "non-negative"),
                                            (["a", "b"], None, "kl", "need the OT loss")]:
        with pytest.raises(SelkdError, match=message):
            check_mixture(members, weights, loss)
    assert parse_weights("0.7,0.3") == (0.7, 0.3) and parse_weights(None) is None


def test_a_mixture_is_named_by_its_members_and_races_after_the_single_teachers():
    name = mixture_name(["a", "b"])
    assert members_of(name) == ("a", "b") and members_of("a") == () and members_of(LABELS_ONLY) == ()
    pool = candidates(["a", "b"], (0.3, 1.0), name)
    assert [(c.teacher_id, c.lam) for c in pool] == [("a", 0.3), ("a", 1.0), ("b", 0.3), ("b", 1.0),
                                                      (name, 0.3), (name, 1.0), (LABELS_ONLY, 0.0)]
    assert describe(("a", "b"), (0.75, 0.25)) == "0.75 a + 0.25 b"
    with pytest.raises(SelkdError, match="--mixture: 3 teachers, but the shortlist holds 2"):
        SelectConfig(shortlist=2, mixture=3)


def test_mixed_data_puts_the_teachers_side_by_side():
    from selkd_ray.training.student_data import mixed

    def data(classes: int, fill: float) -> StudentData:
        return StudentData(np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, -1, -1]),
                           np.full((4, classes), fill, np.float32), np.full((classes, 2), fill),
                           np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 1]), 2, (1, 2, 2), (0.5,), (0.5,))

    both = mixed([data(3, 1.0), data(5, 2.0)], (0.6, 0.4))
    assert both.teacher_logits.shape == (4, 8) and both.cost.shape == (8, 2)
    assert (both.teacher_logits[:, :3] == 1.0).all() and (both.teacher_logits[:, 3:] == 2.0).all()
    assert both.teacher_parts == (3, 5) and both.teacher_weights == (0.6, 0.4)
