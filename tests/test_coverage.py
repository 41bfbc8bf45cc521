"""Issue 42: which target classes a teacher knows (its recall through the cost matrix), and the covering mixture."""
import numpy as np
import pytest

from selkd_ray.coverage import Coverage, class_recall, covering_members, mapping
from selkd_ray.scoring.costs import conditional_cost

LABELS = np.array([0, 0, 1, 1, 2, 2, -1])  # three target classes, two images each, one unlabelled image


def teacher(rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(its probabilities on the seven images, its conditional cost fitted on the labelled six)."""
    probs = np.array(rows, dtype=float)
    return probs, conditional_cost(probs[:6], LABELS[:6], 3)


def test_the_mapping_inverts_the_conditional_cost_and_recall_is_the_carried_mass_on_the_true_class():
    probs, cost = teacher([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [0.5, 0.5]])  # knows 0; 1 and 2 alike
    joint = probs[:6].T @ np.eye(3)[LABELS[:6]]
    prior = 0.01 * 6 / (2 * 3)
    assert np.allclose(mapping(cost), (joint + prior) / (joint.sum(1, keepdims=True) + 3 * prior))  # P(y | z)
    recall = class_recall(probs, LABELS, cost)
    by_hand = [(probs[LABELS == c] @ mapping(cost))[:, c].mean() for c in range(3)]
    assert np.allclose(recall, by_hand)
    assert recall[0] > 0.95 and 0.45 < recall[1] < 0.55 and 0.45 < recall[2] < 0.55  # 1 and 2: a coin toss


def specialists() -> Coverage:
    knows_0 = teacher([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0]])
    knows_12 = teacher([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]])
    knows_2 = teacher([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 0]])
    recall = {name: class_recall(probs, LABELS, cost) for name, (probs, cost) in
              (("knows-0", knows_0), ("knows-all", knows_12), ("knows-2", knows_2))}
    return Coverage(recall, ("a", "b", "c"))


def test_a_teacher_that_knows_every_class_needs_no_mixture():
    coverage = specialists()
    assert coverage.covers(["knows-all"]) and covering_members(coverage, ["knows-all", "knows-0", "knows-2"]) == ()


def test_the_covering_members_start_from_the_scans_best_and_add_the_teacher_of_its_weakest_class():
    coverage = Coverage({k: v for k, v in specialists().recall.items() if k != "knows-all"}, ("a", "b", "c"))
    assert not coverage.covers(["knows-0"]) and not coverage.covers(["knows-2"])
    assert coverage.weakest(["knows-0"])[0] in ("b", "c")
    # knows-2 recalls c: together they know more than either alone (b still a coin toss: all they can do)
    members = covering_members(coverage, ["knows-0", "knows-2"], threshold=0.6)
    assert members == ("knows-0", "knows-2")
    assert covering_members(coverage, ["knows-2", "knows-0"], threshold=0.6)[0] == "knows-2"  # the scan's order


def test_no_mixture_where_no_second_teacher_adds_anything():
    probs, cost = teacher([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0]])
    same = class_recall(probs, LABELS, cost)
    coverage = Coverage({"first": same, "copy": same.copy()}, ("a", "b", "c"))
    assert not coverage.covers(["first"]) and covering_members(coverage, ["first", "copy"]) == ()


@pytest.mark.parametrize("threshold", [0.3, 0.99])
def test_the_threshold_decides_whether_the_best_teacher_covers(threshold):
    coverage = Coverage({k: v for k, v in specialists().recall.items() if k != "knows-all"}, ("a", "b", "c"))
    members = covering_members(coverage, ["knows-0", "knows-2"], threshold=threshold)
    assert (members == ()) == (threshold < coverage.weakest(["knows-0"])[1])


def test_a_coverage_that_cannot_be_computed_is_one_line_and_the_race_goes_on():
    """Issue 42's bad input: a shortlisted teacher whose outputs on the labelled images are not finite has no
    coverage to read. The scan's best broken: one line, no mixture (the race goes on as without --cover); another
    broken: one line, and it is left out of the covering mixture."""
    from types import SimpleNamespace

    from selkd_ray.plans.mixtures import plan_cover
    from selkd_ray.selection import SelectConfig

    def member(probs: np.ndarray, cost: np.ndarray) -> SimpleNamespace:
        return SimpleNamespace(teacher_logits=np.log(np.clip(probs, 1e-12, None)), labels=LABELS, cost=cost)

    knows_0 = teacher([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0]])
    broken = (np.full((7, 2), np.nan), knows_0[1].copy())
    lines = []
    run = SimpleNamespace(config=SelectConfig(), mixture=(), task=SimpleNamespace(label_names=("a", "b", "c")),
                          progress=lines.append)
    assert plan_cover(run, ["nan-teacher", "knows-0"], {"nan-teacher": member(*broken), "knows-0": member(*knows_0)}) is False
    assert lines == ["coverage: cannot be computed for nan-teacher (its outputs on the labelled images or its cost "
                     "matrix are not finite): no mixture races"] and run.mixture == ()
    lines.clear()
    assert plan_cover(run, ["knows-0", "nan-teacher"], {"nan-teacher": member(*broken), "knows-0": member(*knows_0)}) is False
    assert lines == ["coverage: cannot be computed for nan-teacher (its outputs on the labelled images or its cost "
                     "matrix are not finite); left out of the covering mixture"]
