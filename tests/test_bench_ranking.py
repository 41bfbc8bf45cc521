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


@pytest.fixture(scope="module")
def quick_run(runner_pool, ranking, tmp_path_factory):
    """The ranking benchmark's --quick, run once for this module (its scans on the suite's runner pool): the
    selection benchmark reuses its zoo and ground-truth students, as `bench/selection.py` reuses the full
    run's."""
    out = tmp_path_factory.mktemp("bench-quick")
    messages = []
    return out, ranking.run_benchmark(out, ranking.quick_plan(), say=messages.append, runners=runner_pool), messages


def test_quick_benchmark_distils_ranks_and_caches_ground_truth(ranking, quick_run, runner_pool):
    tmp_path, result, messages = quick_run
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
    text = (tmp_path / "ranking.txt").read_text()
    assert "weighted tau" in text
    # the rankers beside the single scorers, the learning curve, the product's sequence, and the goal's verdict
    assert {"aggregate", "learned-loto", "learned-xsrc"} <= {r["scorer"] for r in summary}
    assert "learning curve" in text and "product's sequence" in text and "goal " in text
    assert [r["tasks"] for r in result["curve"]] == [1] and [r["position"] for r in result["sequence"]] == [1, 2]
    assert result["sequence"][0]["ranked_by"].startswith("aggregate")  # nothing recorded before the first
    from selkd_ray.io.experience import read_experience

    seeded = read_experience(tmp_path / "experience")  # the ground truth, in the format a team can seed with
    assert len(seeded) == 2 * len(ranking.QUICK_TEACHERS) and {r.task for r in seeded} == {"mnist-358", "mnist-147"}

    again = ranking.run_benchmark(tmp_path, ranking.quick_plan(), say=messages.append, runners=runner_pool)
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


def test_learned_rankers_on_units_never_fit_the_target_they_rank(ranking):
    import learning
    from selkd_ray.scoring.rankers import Candidate

    rng = np.random.default_rng(0)
    units = {}
    for target in ("mnist-a", "mnist-b", "mnist-c", "sklearn-a", "sklearn-b", "sklearn-c"):
        values = {name: rng.normal(size=5) for name in ("nce", "leep", "ot", "gbc", "knn", "lead")}
        outcomes = np.argsort(np.argsort(values["knn"])) * 0.03  # kNN orders every target's outcomes
        units[(target, 0)] = tuple(Candidate(f"t{i}", {n: float(v[i]) for n, v in values.items()}, 1.0, 1.0, 3, 0.0,
                                             float(outcomes[i])) for i in range(5))
    labels_only = {unit: 0.5 for unit in units}
    rows = {(r["target"], r["scorer"]): r for r in learning.learned_unit_rows(units, ranking.unit_metrics,
                                                                              labels_only)}
    assert rows[("mnist-a", "learned-loto")]["weighted_tau"] > 0.8  # learned kNN from the other five
    assert rows[("mnist-a", "learned-xsrc")]["weighted_tau"] > 0.8  # and from the other source's three
    with pytest.raises(AssertionError, match="never rank"):
        learning.ranked_by("learned", units, ("mnist-a", 0), {"mnist-a", "mnist-b"})
    curve = learning.learning_curve(units, ranking.unit_metrics, sizes=(1, 3, 5), draws=3)
    assert [r["tasks"] for r in curve] == [1, 3, 5] and curve[0]["fell_back"] > 0 and curve[-1]["fell_back"] == 0
    assert curve[-1]["weighted_tau"] > curve[0]["weighted_tau"]  # more experience, a better ranking here
    sequence = learning.product_sequence(units, ranking.unit_metrics, sorted(t for t, _ in units))
    assert [r["ranked_by"] for r in sequence][:3] == ["aggregate (too little experience)"] * 3
    assert sequence[-1]["ranked_by"] == "learned" and sequence[-1]["experience_targets"] == 5


def test_quick_selection_benchmark_races_a_mixture_beside_the_single_teachers(ranking, quick_run, runner_pool):
    import selection

    out, _, _ = quick_run
    messages = []
    result = selection.run(out, ranking.quick_plan(), 2, 1, say=messages.append, runners=runner_pool)  # as --quick
    unit, = result["units"]  # the one held-out target of the quick plan, seed 0
    assert unit["target"] == "mnist-147" and not any(m.startswith("[zoo") for m in messages)  # the ranking's zoo
    # every reference is trained with the selection's final recipe (refit), so none is the ranking's student
    assert "ground truth: 0 students cached, 5 to train" in messages
    assert all(0.0 <= unit[c] <= 1.0 for c in selection.COLUMNS)
    assert unit["oracle"] >= unit["top1"]  # the oracle is the best single teacher's student
    assert len(unit["mix2_members"]) == 2 and len(unit["mix3_members"]) == 3
    assert unit["mix3_weights"][0] >= unit["mix3_weights"][-1] and sum(unit["mix3_weights"]) == pytest.approx(1.0)
    assert unit["cost_select"] > 0 and unit["cost_select_mixture"] > unit["cost_select"]  # one more trial
    text = result["text"]
    assert unit["cost_select_per_image"] > unit["cost_select"]  # its own race, a per-image mixture in it
    for line in ("top-2 mixture", "top-3 mixture", "top-3, per-image weights", "oracle single teacher",
                 "select --mixture 2", "select --mixture 2 --per-image-weights",
                 "regret to the oracle", "gain over top-1", "the race picked the mixture in",
                 "select, one experience table", "the guard's rules on these units", "always the race's winner"):
        assert line in text, line
    # the race's margin, counterfactually from its own trials: at the defaults it is what select kept
    assert "the race's overtaking margin on these units" in text and "reproduce what select kept in 1/1" in text
    # the product's sequence: a real selection ranked with `learned` on an experience table empty at the start
    step, = result["sequence"]
    assert step["ranked_by"] == "aggregate" and step["other_tasks"] == 0  # nothing recorded before the first
    assert step["race_epochs"] >= 1 and step["race_flops"] > 0 and -1.0 <= step["regret"] <= 1.0
    assert "the product's sequence" in text and "mean regret to the oracle" in text
    from selkd_ray.io.experience import read_experience

    recorded = read_experience(out / "sequence" / "experience")  # what the sequence's selection appended
    assert recorded and {row.task for row in recorded} == {"mnist-147"}
    race = out / "select" / "labels-20" / "mnist-147-0" / "selection.parquet"  # a mixture's selection, written last
    assert any(r["candidate"].startswith("mixture:") for r in pq.read_table(race).to_pylist() if r["kind"] == "trial")


def test_quick_probe_sizes_find_each_scorers_smallest_useful_probe(quick_run, runner_pool):
    """bench/probe_sizes.py --quick on the quick ranking run's zoo and cached students: every probe-reading
    scorer at 2 and 5 images per class, its tau, its ties, and the smallest size the rule accepts."""
    import probe_sizes

    out, _, _ = quick_run
    messages = []
    result = probe_sizes.run(out, probe_sizes.quick_plan(), probe_sizes.QUICK_SIZES, say=messages.append,
                             runners=runner_pool)
    scorers = set(probe_sizes.scorers_timed())
    assert "knn" in scorers and "params" not in scorers and "learned" not in scorers
    rows = pq.read_table(out / "probe_sizes.parquet").to_pylist()
    assert {(r["size"], r["scorer"]) for r in rows} == {(s, n) for s in (2, 5) for n in scorers}
    assert all(r["units"] == 2 and r["targets"] == 2 and 0 <= r["tied_units"] <= 2 for r in rows)
    assert set(result["minimum"]) == scorers
    for name, least in result["minimum"].items():  # what the rule says, read back from the rows
        assert least in (2, 5, None)
        if least is not None:
            assert all(r["tied_units"] == 0 for r in rows if r["scorer"] == name and r["size"] >= least)
    assert sorted(p.name for p in (out / "probe-sizes").iterdir()) == [
        f"{t}-seed0-p{s}" for t in ("mnist-147", "mnist-358") for s in (2, 5)]
    assert "minimum useful probe" in result["text"] and all(f"\n{n:<13}" in result["text"] for n in scorers)


def test_the_minimum_useful_probe_rule_by_hand(ranking):  # ranking: puts bench/ on the path
    import probe_sizes

    def rows(name, taus, tied):
        return [{"size": s, "scorer": name, "weighted_tau": tau, "tied_units": t}
                for s, tau, t in zip((2, 5, 10), taus, tied)]

    found = probe_sizes.minimum_sizes(
        rows("flat", (0.50, 0.49, 0.50), (0, 0, 0)) + rows("rising", (0.1, 0.3, 0.5), (0, 0, 0))
        + rows("tied-small", (0.5, 0.5, 0.5), (1, 0, 0)) + rows("tied-mid", (0.5, 0.5, 0.5), (0, 2, 0))
        + rows("tied-always", (0.5, 0.5, 0.5), (1, 1, 1)) + rows("dips", (0.5, 0.3, 0.5), (0, 0, 0)))
    assert found == {"flat": 2, "rising": 10, "tied-small": 5, "tied-mid": 10, "tied-always": None, "dips": 10}
