"""The selection arithmetic without Ray: the guard, the shortlist, the budget split, the race's epochs."""
from dataclasses import replace

import numpy as np
import pytest

from selkd_ray.errors import SelkdError
from selkd_ray.selection import (LABELS_ONLY, PRIOR_MIN_SD, Candidate, Evidence, SelectConfig, candidates,
                                 cross_fitted, decide, experience_prior, guard, paired_error, race_epochs, race_order,
                                 race_winner, shortlist, validation_folds)


def test_guard_keeps_the_distilled_student_only_beyond_noise():
    labels = np.array([1] * 80 + [0] * 20, bool)
    better = labels.copy()
    better[80:95] = True  # 15 images only the distilled student gets right: b=15, c=0
    decision = guard(better, labels, 1.0, "good")
    assert decision.keep_distilled and decision.difference == pytest.approx(0.15)
    assert decision.standard_error == pytest.approx(np.sqrt(15) / 100)
    assert "kept the student distilled from good" in decision.message

    noisy = labels.copy()
    noisy[80:83] = True  # b=3
    noisy[0:1] = False  # c=1: +0.02 against a standard error of 0.02
    decision = guard(noisy, labels, 1.0, "noisy")
    assert not decision.keep_distilled and decision.difference == pytest.approx(0.02)
    assert decision.message.startswith("kept the LABEL-ONLY student: distillation from noisy was not better")
    # the same images right and wrong: nothing tells them apart, so the teacher the ranking chose stands
    assert guard(labels, labels, 0.0, "same").keep_distilled
    worse = labels.copy()
    worse[:30] = False
    assert not guard(worse, labels, 0.0, "bad").keep_distilled


def test_guard_needs_the_same_validation_images():
    with pytest.raises(SelkdError, match="same, non-empty validation split"):
        guard(np.ones(3, bool), np.ones(4, bool), 1.0, "t")


def test_shortlist_puts_pinned_teachers_first():
    ranked = ["a", "b", "c", "d"]
    assert shortlist(ranked, 2) == ["a", "b"]
    assert shortlist(ranked, 2, ("d",)) == ["d", "a"]
    assert shortlist(ranked, 1, ("c", "d")) == ["c", "d"]
    with pytest.raises(SelkdError, match="--teacher: zz not among the scan's ranked teachers"):
        shortlist(ranked, 2, ("zz",))


def test_candidates_race_every_lambda_and_a_label_only_reference():
    pool = candidates(["a", "b"], (0.3, 1.0))
    assert [(c.teacher_id, c.lam) for c in pool] == [("a", 0.3), ("a", 1.0), ("b", 0.3), ("b", 1.0), (LABELS_ONLY, 0.0)]
    assert pool[0].name == "a (lambda 0.3)" and pool[-1].name == LABELS_ONLY


def test_race_epochs_fit_every_trial_running_to_the_end():
    config = SelectConfig(race_epochs=6)
    assert race_epochs(None, [10.0, 10.0], config) == 6
    assert race_epochs(100.0, [10.0, 10.0, 5.0], config) == 4  # 4 x 25 <= 100
    assert race_epochs(1000.0, [10.0], config) == 6  # capped by the configured most
    assert race_epochs(20.0, [10.0, 10.0, 5.0], config) == 0  # not one epoch each: no race


def test_a_covering_mixture_leads_the_races_order_and_a_top_k_mixture_follows_its_teachers():
    """Issue 42: the coverage rule's mixture is the race's first guess (the scan's best lacks classes it knows),
    so on noise it stands; a --mixture K of the top teachers must still beat its best member beyond noise."""
    pool = candidates(["top", "second"], (1.0,), "mixture:top+second")
    tie = np.array([True] * 30 + [False] * 10)
    trials = [(c, tie) for c in pool[:-1]] + [(pool[-1], ~tie)]  # label-only far behind

    def winner(covering: bool) -> str:
        order = race_order(pool, covering)
        return race_winner(sorted(trials, key=lambda t: order[(t[0].teacher_id, t[0].lam)]), 0.5).teacher_id

    assert winner(covering=True) == "mixture:top+second" and winner(covering=False) == "top"
    assert race_order(pool)[("labels-only", 0.0)] == 3 and race_order(pool, True)[("mixture:top+second", 1.0)] == -1


def test_the_race_winner_overtakes_a_better_ranked_teacher_only_beyond_paired_noise():
    top, second, labels = Candidate("top", 1.0), Candidate("second", 1.0), Candidate(LABELS_ONLY, 0.0)

    def right(*ranges, n=80):
        correct = np.zeros(n, bool)
        for start, stop in ranges:
            correct[start:stop] = True
        return correct

    poor = right((0, 24))
    # 80 validation images, the second teacher two images ahead (0.863 against 0.838):
    # on the same 67 images and two more (b = 2, c = 0): a lead beyond paired noise (0.025 > 0.5 x 0.018),
    # where an unpaired error (0.5 x 0.055 = 0.028) would have called it noise
    assert race_winner([(top, right((0, 67))), (second, right((0, 69))), (labels, poor)], 0.5) == second
    # the same two images ahead, but on different images (b = 12, c = 10): noise (0.025 <= 0.5 x 0.059)
    assert race_winner([(top, right((0, 67))), (second, right((0, 57), (67, 79))), (labels, poor)], 0.5) == top
    assert race_winner([(top, right((0, 56))), (second, right((0, 76)))], 0.5) == second  # a real lead
    assert race_winner([(top, right((0, 67))), (second, right((0, 57), (67, 79)))], 0.0) == second  # z 0: the best
    assert race_winner([(top, right((0, 32))), (labels, right((0, 72)))], 0.5) == labels  # no teacher helped
    with pytest.raises(SelkdError, match="race: expected finished trials"):
        race_winner([], 0.5)
    with pytest.raises(SelkdError, match="same, non-empty validation images"):
        race_winner([(top, right((0, 3), n=5)), (second, right((0, 3), n=6))], 0.5)


def test_the_validation_folds_halve_each_class_the_same_way_every_time():
    from selkd_ray.demo.data import target_task

    task = target_task()
    folds = validation_folds(task)
    labels = task.labels[task.indices("val")]
    assert len(folds) == len(labels) and set(folds) == {0, 1}
    assert np.array_equal(np.bincount(labels[folds == 0]), np.bincount(labels[folds == 1]))  # stratified halves
    assert np.array_equal(validation_folds(task), folds)


def right(*ranges, n=40):
    correct = np.zeros(n, bool)
    for start, stop in ranges:
        correct[start:stop] = True
    return correct


def test_cross_fitting_judges_each_folds_winner_on_the_other_folds_images():
    top, second, labels = Candidate("top", 1.0), Candidate("second", 1.0), Candidate(LABELS_ONLY, 0.0)
    folds = np.array([0] * 20 + [1] * 20)
    reference = right((0, 10), (20, 30))  # label-only: 10 of 20 right in each fold
    # `top` leads only on fold 0's images (a lucky streak there), `second` is ahead on both folds
    lucky = right((0, 20), (20, 30))
    steady = right((0, 15), (20, 35))
    finished = [(top, lucky), (second, steady), (labels, reference)]
    evidence, winners = cross_fitted(finished, labels, folds, 0.5)
    # fold 0 picks `top` (20 right against 15), judged on fold 1 where it equals label-only: b = c = 0;
    # fold 1 picks `second` (15 against 10), judged on fold 0: 5 images better, none worse
    assert winners == [top, second]
    assert (evidence.better, evidence.worse, evidence.images) == (5, 0, 40)
    # the same trials judged on the images that chose them would have counted top's streak: b = 10
    assert paired_error(lucky, reference)[0] * 40 == 10
    # a fold whose winner is labels alone adds no difference
    evidence, winners = cross_fitted([(top, right((0, 2))), (labels, reference)], labels, folds, 0.5)
    assert winners == [labels, labels] and (evidence.better, evidence.worse) == (0, 0)


def test_the_prior_from_past_races_changes_a_verdict_on_few_images():
    thin = Evidence(4, 3, 60, "test")  # +0.017 +- 0.044: within noise alone
    assert not decide(thin, 0.5, "t").keep_distilled
    helped = experience_prior({"a": [0.05, 0.07], "b": [0.04], "c": [0.06, 0.03], "d": [0.05]}, "past")
    assert helped.tasks == 4 and helped.mean == pytest.approx(0.04875) and helped.sd == PRIOR_MIN_SD
    kept = decide(thin, 0.5, "t", helped)
    assert kept.keep_distilled and kept.posterior_mean > thin.difference and "prior from 4 past task(s)" in kept.message
    clear = Evidence(6, 3, 60, "test")  # +0.05 +- 0.05: kept alone
    assert decide(clear, 0.5, "t").keep_distilled
    hurt = experience_prior({"a": [-0.05], "b": [-0.06], "c": [-0.04]}, "past")
    assert not decide(clear, 0.5, "t", hurt).keep_distilled  # where distillation has hurt: more caution
    assert experience_prior({"a": [0.1], "b": [0.1]}, "past") is None  # too few past tasks: no prior
    # no image only one of them gets right (a race too short to learn, or both folds' winners labels alone): the
    # evidence is silent, the race's winner stands unless the prior says distillation hurts beyond noise
    silent = Evidence(0, 0, 60, "test")
    alone = decide(silent, 0.5, "t", helped)
    assert alone.posterior_mean == helped.mean and alone.keep_distilled
    assert decide(silent, 0.5, "t").keep_distilled and "no image tells them apart" in decide(silent, 0.5, "t").message
    assert not decide(silent, 0.5, "t", hurt).keep_distilled  # -0.05 < -0.5 x 0.03
