"""Budget parsing, the halving schedule and the ledger: pure arithmetic."""
import numpy as np
import pytest

from selkd_ray.budget import Budget, Ledger, parse_budget, probe_sizes, survivors
from selkd_ray.errors import SelkdError
from selkd_ray.scoring.probe import stratified_indices


@pytest.mark.parametrize("text, expected", [("2e9", Budget("flops", 2e9)), ("2G", Budget("flops", 2e9)),
                                            ("1.5t", Budget("flops", 1.5e12)), ("300s", Budget("seconds", 300.0)),
                                            ("5min", Budget("seconds", 300.0)), ("1h", Budget("seconds", 3600.0))])
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["lots", "5 parsecs", "-3s", "0"])
def test_bad_budget_is_one_clear_line(text):
    with pytest.raises(SelkdError, match="--budget"):
        parse_budget(text)


def test_probe_sizes_grow_by_eta_to_the_full_probe():
    assert probe_sizes(20, None, None) == [20]
    assert probe_sizes(20, 2, 3) == [2, 6, 18, 20]
    assert probe_sizes(8, 2, 2) == [2, 4, 8]
    assert probe_sizes(4, 8, 2) == [4]
    with pytest.raises(SelkdError, match="--eta"):
        probe_sizes(20, 2, 1)
    with pytest.raises(SelkdError, match="--min-probe"):
        probe_sizes(20, 1, 3)


def test_survivors_keep_the_best_third():
    assert [survivors(n, 3) for n in (1, 2, 3, 4, 10)] == [1, 1, 1, 2, 4]
    assert survivors(7, None) == 7


def test_flops_ledger_never_commits_past_the_budget():
    ledger = Ledger(Budget("flops", 100))
    assert ledger.affords(60)
    ledger.spend(60)
    assert not ledger.affords(50) and ledger.affords(40)
    assert "60%" in ledger.describe()
    timed = Ledger(Budget("seconds", 10))
    timed.seconds = 9.9
    assert timed.affords(10**15)
    timed.seconds = 10.0
    assert not timed.affords(0)


def test_probes_of_growing_size_are_nested():
    labels = np.repeat(np.arange(3), 30)
    small, large = stratified_indices(labels, 4, seed=7), stratified_indices(labels, 12, seed=7)
    assert set(small) < set(large)
    assert np.bincount(labels[small]).tolist() == [4, 4, 4]


def selection_ledger(budget, final_need: float, scan_share: float = 0.2) -> tuple[Ledger, float | None]:
    ledger = Ledger(budget)
    return ledger, ledger.plan_selection(scan_share, final_need)


def test_a_flops_budget_is_split_scan_then_final_then_race():
    ledger, scan = selection_ledger(Budget("flops", 1000.0), final_need=500.0)
    assert (scan, ledger.reserved) == (200.0, 500.0) and not ledger.notes
    ledger.spend(50.0)
    assert ledger.race_allowance() == 450.0  # what the scan did not spend goes to the race
    ledger.spend(120.0)
    assert ledger.race_allowance() == 330.0  # the shortlist's outputs are paid before the race
    tight, _ = selection_ledger(Budget("flops", 1000.0), final_need=2000.0)
    assert tight.reserved == 800.0 and "40%" in tight.notes[0]
    tight.spend(200.0)
    assert tight.race_allowance() == 0.0
    timed, scan = selection_ledger(Budget("seconds", 100.0), final_need=1e12)
    timed.spend(5.0)
    assert timed.race_allowance() is None  # Tune's time budget
    assert selection_ledger(None, 500.0)[1] is None and Ledger(None).race_allowance() is None
    assert (scan, timed.share("race"), timed.share("final")) == (20.0, 40.0, 40.0)


def test_the_final_stage_gets_what_the_budget_has_left():
    ledger, _ = selection_ledger(Budget("flops", 1000.0), final_need=500.0)
    ledger.spend(200.0 + 50.0 + 150.0)
    assert ledger.final_allowance() == 600.0  # scan, outputs and race spent less
    ledger.spend(800.0)
    assert ledger.final_allowance() == 0.0
    timed, _ = selection_ledger(Budget("seconds", 100.0), 1.0)
    timed.spend(1e12)
    assert timed.final_allowance() == 40.0  # wall share
    assert selection_ledger(None, 1.0)[0].final_allowance() is None


def test_a_final_stage_below_one_epoch_is_refused_in_one_line():
    what = "the final distillation after the outputs; one epoch of it and of its label-only reference"
    Ledger(Budget("flops", 1000.0)).require(300.0, 300.0, what)
    Ledger(Budget("seconds", 10.0)).require(0.0, 300.0, what)  # wall time is not counted in FLOPs
    with pytest.raises(SelkdError, match=r"^--budget: 1e\+03 FLOPs leaves 299 FLOPs for the final distillation "
                                         r"after the outputs; one epoch .* needs 300$"):
        Ledger(Budget("flops", 1000.0)).require(299.0, 300.0, what)


def test_a_stage_ledger_charges_the_job_and_refuses_past_its_own_share():
    job = Ledger(Budget("flops", 1000.0))
    scan = job.for_stage(200.0)
    assert scan.charge_if_affordable(150) and not scan.charge_if_affordable(100)  # past the scan's share
    job.charge("race", 300.0)
    assert (scan.flops, job.flops) == (150, 450) and [c.stage for c in job.charges] == ["race"]
