"""LEAD against a numerical integration of its ODE; the task scorers (`aggregate`, `learned`) against
computations by hand; the learned ranker never fitted on the task it ranks; bad or thin experience falls back,
saying so."""
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import rankdata

from selkd_ray.config import ScanConfig
from selkd_ray.errors import SelkdError
from selkd_ray.experience import history_of
from selkd_ray.io.experience import append_experience
from selkd_ray.records import Evidence
from selkd_ray.rows import ExperienceRow
from selkd_ray.scoring import SCORERS
from selkd_ray.scoring.lead import evolved_margin, lead_score
from selkd_ray.scoring.rankers import (AGGREGATE_INPUTS, MIN_TASKS, Candidate, TaskEvidence, feature_names,
                                       fit_weights, score_task)


def integrate_two_logits(right: float, time: float) -> float:
    """log softmax of the right class after integrating dz/dt = onehot - softmax(z) from z = (log q, log(1-q))."""
    def flow(_, z):
        p = np.exp(z - np.logaddexp(z[0], z[1]))
        return np.array([1.0, 0.0]) - p

    end = solve_ivp(flow, (0.0, time), [math.log(right), math.log1p(-right)], rtol=1e-10, atol=1e-12).y[:, -1]
    return float(end[0] - np.logaddexp(end[0], end[1]))


@pytest.mark.parametrize("right", [1e-4, 0.05, 0.3, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("time", [0.1, 1.0, 5.0])
def test_lead_closed_form_is_the_odes_end_state(right, time):
    margin = evolved_margin(np.array([math.log(right) - math.log1p(-right)]), time)[0]
    assert -np.logaddexp(0.0, -margin) == pytest.approx(integrate_two_logits(right, time), abs=1e-7)


def test_lead_score_by_an_independent_computation():
    rng = np.random.default_rng(3)
    n, teacher_classes, target_classes = 24, 5, 3
    probs = rng.dirichlet(np.ones(teacher_classes) * 0.5, size=n)
    labels = np.arange(n) % target_classes
    labels[:2] = 0  # unequal classes: the mean is over classes, not images
    # P(y | z) by counting, then each image's carried-over probability of its own class, one at a time
    joint = np.zeros((teacher_classes, target_classes))
    for p, y in zip(probs, labels):
        joint[:, y] += p / n
    per_class: dict[int, list[float]] = {}
    for p, y in zip(probs, labels):
        right = sum(p[z] * joint[z, y] / joint[z].sum() for z in range(teacher_classes))
        per_class.setdefault(int(y), []).append(integrate_two_logits(right, 1.0))
    expected = np.mean([np.mean(v) for v in per_class.values()])
    evidence = Evidence(probs, None, labels, target_classes)
    assert lead_score(evidence) == pytest.approx(expected, abs=1e-6)
    assert SCORERS.get("lead")(evidence) == lead_score(evidence)


def test_lead_prefers_the_teacher_whose_classes_carry_over():
    labels = np.repeat(np.arange(3), 10)
    sharp = np.eye(4)[labels] * 0.9 + 0.025  # each target class has its own teacher class
    blurred = np.full((30, 4), 0.25)  # says nothing
    assert lead_score(Evidence(sharp, None, labels, 3)) > lead_score(Evidence(blurred, None, labels, 3))


def candidates(values: dict[str, list[float]], outcomes=None, **static) -> tuple[Candidate, ...]:
    count = len(next(iter(values.values())))
    return tuple(Candidate(f"t{i}", {name: v[i] for name, v in values.items()},
                           params=static.get("params", [1.0] * count)[i], flops=1.0, teacher_classes=3,
                           label_overlap=0.0, outcome=math.nan if outcomes is None else outcomes[i])
                 for i in range(count))


def test_aggregate_is_the_mean_rank_of_its_inputs_by_hand():
    values = {"nce": [1.0, 2.0, 3.0], "leep": [3.0, 2.0, 1.0], "gbc": [0.1, 0.3, 0.2], "ot": [5.0, 5.0, 1.0],
              "knn": [math.nan, 0.5, 0.4]}
    scores, notes = score_task(["aggregate"], TaskEvidence("task", candidates(values)))
    by_hand = []
    for i in range(3):
        mine = []
        for name in AGGREGATE_INPUTS:
            finite = [(j, v) for j, v in enumerate(values[name]) if np.isfinite(v)]
            rank = rankdata([v for _, v in finite])
            mine += [(rank[k] - 1) / (len(finite) - 1) for k, (j, _) in enumerate(finite) if j == i]
        by_hand.append(np.mean(mine))
    assert scores["aggregate"] == pytest.approx(by_hand) and notes == []


def past(seed: int, decisive: str, tasks: int) -> dict[str, tuple[Candidate, ...]]:
    """Past tasks where one scorer (`decisive`) orders the outcomes and the others are noise."""
    rng = np.random.default_rng(seed)
    history = {}
    for task in range(tasks):
        values = {name: rng.normal(size=6).tolist() for name in ("nce", "leep", "ot", "gbc", "knn", "lead")}
        outcomes = (np.argsort(np.argsort(values[decisive])) * 0.02).tolist()
        history[f"past{task}"] = candidates(values, outcomes)
    return history


def test_learned_finds_the_scorer_that_ordered_past_outcomes():
    weights = fit_weights(past(0, "gbc", 5))
    names = feature_names()
    assert names[int(np.argmax(weights))] == "gbc"
    new = {name: [0.0, 1.0, 2.0, 3.0] for name in ("nce", "leep", "ot", "knn", "lead")}
    new["gbc"] = [3.0, 2.0, 1.0, 0.0]  # the others disagree with gbc here: learned must follow gbc
    scores, notes = score_task(["learned"], TaskEvidence("new", candidates(new), past(0, "gbc", 5)))
    assert notes == [] and list(np.argsort(scores["learned"])) == [3, 2, 1, 0]
    aggregate, _ = score_task(["aggregate"], TaskEvidence("new", candidates(new)))
    assert list(np.argsort(aggregate["aggregate"])) == [0, 1, 2, 3]  # the cold start follows the majority


def test_learned_never_fits_on_the_task_it_ranks():
    history = past(1, "gbc", MIN_TASKS)
    new = {name: [0.0, 1.0, 2.0, 3.0] for name in ("nce", "leep", "ot", "gbc", "knn", "lead")}
    new["nce"] = [3.0, 2.0, 1.0, 0.0]
    # the task's own outcomes, in the table, say "nce" (and strongly: 50 copies would sway any fit)
    leaking = {**history, "new": candidates(new, [0.3, 0.2, 0.1, 0.0])}
    clean, _ = score_task(["learned"], TaskEvidence("new", candidates(new), history))
    scored, _ = score_task(["learned"], TaskEvidence("new", candidates(new), leaking))
    assert scored["learned"] == pytest.approx(clean["learned"])
    other, _ = score_task(["learned"], TaskEvidence("other", candidates(new), leaking))
    assert other["learned"] != pytest.approx(clean["learned"])  # the same rows do count for another task


def test_too_little_experience_ranks_by_the_aggregate_and_says_so():
    new = candidates({name: [0.0, 1.0, 2.0] for name in AGGREGATE_INPUTS})
    scores, notes = score_task(["learned"], TaskEvidence("new", new, past(2, "gbc", MIN_TASKS - 1)))
    aggregate, _ = score_task(["aggregate"], TaskEvidence("new", new))
    assert scores["learned"] == aggregate["aggregate"]
    assert notes == [f"learned: {MIN_TASKS - 1} task(s) of experience with teachers whose outcomes differ; a fit "
                     f"needs at least {MIN_TASKS}; ranked by the cold-start aggregate"]
    with pytest.raises(SelkdError, match="a fit needs at least"):
        fit_weights({})


def test_experience_rows_become_history_by_task_latest_outcome_kept():
    rows = [ExperienceRow("t1", "t1", teacher_id="a", teacher_hash="ha", scores={"nce": 1.0}, outcome=0.1,
                          recorded_at="2026-01-01T00:00:00+00:00"),
            ExperienceRow("t1", "t1", teacher_id="a", teacher_hash="ha", scores={"nce": 1.0}, outcome=0.3,
                          recorded_at="2026-02-01T00:00:00+00:00"),
            ExperienceRow("t2", "t2", teacher_id="b", teacher_hash="hb", scores={"nce": 0.0}, outcome=-0.1)]
    history = history_of(rows)
    assert sorted(history) == ["t1", "t2"] and [c.outcome for c in history["t1"]] == [0.3]


def seeded_experience(folder, task_hashes, decisive="nce"):
    rng = np.random.default_rng(4)
    for number, task_hash in enumerate(task_hashes):
        rows = []
        for teacher in range(4):
            scores = {name: float(rng.random()) for name in ("nce", "leep", "ot", "gbc", "knn", "lead")}
            rows.append(ExperienceRow(task_hash, f"past{number}", teacher_id=f"x{teacher}", teacher_hash=f"h{teacher}",
                                      params=1000, flops_per_sample=10, teacher_classes=3, scores=scores,
                                      outcome=scores[decisive] * 0.1))
        append_experience(rows, folder, f"race{number}")


def test_a_scan_ranks_with_learned_from_its_experience(tiny_zoo, target_task, scan_here, tmp_path):
    seeded_experience(tmp_path / "exp", ["p1", "p2", "p3", target_task.content_hash])
    lines = []
    config = ScanConfig(scorers=("learned", "nce"), probe_per_class=4, experience=str(tmp_path / "exp"))
    result = scan_here(tiny_zoo, target_task, tmp_path / "out", config, progress=lambda e: lines.append(str(e)))
    ranked = result.ranked
    assert all(np.isfinite(row.scores["learned"]) and row.score == row.scores["learned"] for row in ranked)
    assert [row.score for row in ranked] == sorted((row.score for row in ranked), reverse=True)
    assert all(name in ranked[0].scores for name in ("nce", "leep", "gbc", "lead", "aggregate") if name != "aggregate")
    assert not any("cold-start" in line for line in lines)  # 3 other tasks: a fit
    columns = pq.read_schema(tmp_path / "out" / "scores.parquet").names
    assert "score_learned" in columns and "score_gbc" in columns  # its inputs are in the table too


def test_bad_experience_falls_back_to_the_aggregate_in_one_line(tiny_zoo, target_task, scan_here, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    pq.write_table(pa.table({"x": [1]}), shared / "part-foreign.parquet")
    before = (shared / "part-foreign.parquet").read_bytes()
    lines = []
    config = ScanConfig(scorers=("learned",), probe_per_class=4, experience=str(shared))
    result = scan_here(tiny_zoo, target_task, tmp_path / "out", config, progress=lambda e: lines.append(str(e)))
    said = [line for line in lines if "experience not used" in line]
    assert said == [f"learned: experience not used: {shared / 'part-foreign.parquet'}: not an experience table "
                    "(no column 'task_hash'); move it aside (or delete it) and run again to start it afresh; ranked by the "
                    "cold-start aggregate"]
    aggregate = score_task(["aggregate"], TaskEvidence("", tuple(
        Candidate(r.teacher_id, r.scores) for r in result.ranked)))[0]["aggregate"]
    assert [r.scores["learned"] for r in result.ranked] == pytest.approx(list(aggregate))
    assert (shared / "part-foreign.parquet").read_bytes() == before


def test_experience_fit_reports_weights_and_leave_one_task_out(tmp_path):
    from typer.testing import CliRunner

    from selkd_cli.main import app

    seeded_experience(tmp_path, ["p1", "p2"], decisive="gbc")
    thin = CliRunner().invoke(app, ["experience", "fit", "--experience", str(tmp_path)])
    assert thin.exit_code == 0, thin.output
    assert "no fit: learned: 2 task(s) of experience with teachers whose outcomes differ; a fit needs at least 3" \
        in thin.output
    seeded_experience(tmp_path, ["p1", "p2", "p3", "p4", "p5"], decisive="gbc")
    import json

    document = json.loads(CliRunner().invoke(app, ["experience", "fit", "--experience", str(tmp_path),
                                                   "--json"]).output)
    assert document["tasks"] == 5 and document["outcomes"] == 20 and not document["refused"]
    assert max(document["weights"], key=document["weights"].get) == "gbc"
    held = document["leave_one_task_out"]
    assert held["learned"]["tasks"] == 5 and held["learned"]["tau"] > 0.6  # gbc ordered every task's outcomes
    assert held["aggregate"]["tau"] < held["learned"]["tau"]
    shown = CliRunner().invoke(app, ["experience", "fit", "--experience", str(tmp_path)])
    assert "weight gbc" in shown.output and "leave-one-task-out weighted tau, learned" in shown.output


def test_a_saturated_ranking_score_is_broken_by_the_next_scorer_not_by_the_name():
    """kNN at 1.0 for two teachers says nothing between them: the next scorer given decides, the id only last."""
    from selkd_ray.plans.ranking import rank_rows, tiebreak
    from selkd_ray.rows import ScoreRow

    def row(teacher_id: str, knn: float, nce: float) -> ScoreRow:
        return ScoreRow(teacher_id, f"/zoo/{teacher_id}", "test_resnet", teacher_id, "scored", score=knn, round=0,
                        scores={"knn": knn, "nce": nce})

    rows = [row("a-weak", 1.0, -0.9), row("b-strong", 1.0, -0.1), row("c-low", 0.5, 0.0), row("d-nan", 1.0, math.nan)]
    assert [r.teacher_id for r in rank_rows(rows, tiebreak(("knn", "nce")))] == ["b-strong", "a-weak", "d-nan", "c-low"]
    assert [r.teacher_id for r in rank_rows(rows)] == ["a-weak", "b-strong", "d-nan", "c-low"]  # by id without one
