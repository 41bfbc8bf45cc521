"""The ranking benchmark's --quick mode: small, but it really trains teachers, distils students and ranks."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ranking.py"


@pytest.fixture(scope="module")
def ranking():
    spec = importlib.util.spec_from_file_location("bench_ranking", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ranking"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # Ray workers cannot import a script by name
    yield module
    del sys.modules["bench_ranking"]


def test_quick_benchmark_distils_ranks_and_caches_ground_truth(ray_session, ranking, tmp_path):
    messages = []
    result = ranking.run_benchmark(tmp_path, ranking.quick_plan(), say=messages.append)
    truth = result["truth"]
    assert {r["teacher_id"] for r in truth} == set(ranking.QUICK_TEACHERS) | {"labels-only"}
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and not r["cached"] for r in truth)
    summary = pq.read_table(tmp_path / "ranking_summary.parquet").to_pylist()
    assert {r["scorer"] for r in summary} >= {"ot", "ot-student", "leep", "nce", "logme", "sfda", "nleep", "parc",
                                              "transrate", "gbc", "params", "flops", "random"}
    assert {r["target"] for r in result["targets"]} == {"mnist-358", "mnist-147"}  # teachers from both sources
    assert result["default"] and result["default"] != "random"  # chosen on mnist-358, the selection half
    assert all(r["targets"] == 1 for r in summary)  # reported on the held-out target only
    for row in summary:
        assert -1.0 <= row["weighted_tau"] <= 1.0 and row["regret_top1"] >= row["regret_top3"] >= 0.0
    assert (tmp_path / "ranking.png").stat().st_size > 10_000
    assert "weighted tau" in (tmp_path / "ranking.txt").read_text()

    again = ranking.run_benchmark(tmp_path, ranking.quick_plan(), say=messages.append)
    assert all(r["cached"] for r in again["truth"])  # a rerun trains no student
    assert [r["weighted_tau"] for r in again["summary"]] == [r["weighted_tau"] for r in result["summary"]]


def test_unit_metrics_by_hand(ranking):
    accuracy = np.array([0.9, 0.7, 0.8, 0.6])
    perfect = ranking.unit_metrics(np.array([4.0, 2.0, 3.0, 1.0]), accuracy)
    assert perfect["weighted_tau"] == pytest.approx(1.0) and perfect["regret_top1"] == 0.0
    reversed_ = ranking.unit_metrics(-np.array([4.0, 2.0, 3.0, 1.0]), accuracy)
    assert reversed_["weighted_tau"] == pytest.approx(-1.0)
    assert reversed_["regret_top1"] == pytest.approx(0.3) and reversed_["regret_top3"] == pytest.approx(0.1)
    with_nan = ranking.unit_metrics(np.array([np.nan, 2.0, 3.0, 1.0]), accuracy)  # unscored teacher left out
    assert with_nan["regret_top1"] == pytest.approx(0.1)
