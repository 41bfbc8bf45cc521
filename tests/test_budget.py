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
