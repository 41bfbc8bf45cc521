"""Issue 44.2: a selection stopped at any moment finishes when started again, and ends as it would have.

tests/helpers/stop_anywhere.py runs a real `selkd select` (fresh processes, each with its own embedded Ray)
straight through, and on a second output stops it at seven moments spread over its whole run (by SIGTERM to
its group, SIGINT to it, SIGKILL to its group), starting it again after each stop; then it runs to its end,
and once more. It runs beside the suite (helpers/background.py); this test reads what each run printed."""
import json

import pytest
from helpers.background import finished

from selkd_ray.io.results import read_selection

STOPS = ("tests/helpers/stop_anywhere.py", "{out}", "{zoo}", "{task}")


def decided(folder) -> tuple:
    """What a selection kept, from its selection.parquet: the decision, the trials, the final stage."""
    rows = read_selection(folder / "selection.parquet")
    decision, = [row for row in rows if row["kind"] == "decision"]
    trials = sorted((r["candidate"], r["epochs"], r["val_accuracy"], r["status"]) for r in rows if r["kind"] == "trial")
    return (decision["kept"], decision["candidate"], decision["test_accuracy"], decision["better"],
            decision["worse"]), trials


@pytest.mark.background("stop-anywhere", *STOPS, lane="tests")
def test_a_selection_stopped_at_any_moment_finishes_when_started_again_with_the_same_student(tiny_zoo, task_path):
    ran, out = finished("stop-anywhere", STOPS)
    assert ran.returncode == 0, ran.stderr[-3000:]
    runs = json.loads((out / "stops.json").read_text())
    straight, stops, final, again = runs["straight"], runs["stops"], runs["final"], runs["again"]
    assert straight["returncode"] == 0, straight["stderr"][-3000:]
    for stop in stops:  # every moment came, in its stage, and the stop was one of ours
        assert stop["hit"] and stop["stopped"], (stop["moment"], stop["stderr"][-2000:])
        expected = -9 if stop["signal"] == "SIGKILL" else 130
        assert stop["returncode"] == expected, (stop["moment"], stop["stderr"][-2000:])
        assert "Traceback" not in stop["stderr"], (stop["moment"], stop["stderr"][-3000:])
        if stop["signal"] != "SIGKILL":  # ours: within 10 s, in one line, its own Ray gone with it
            assert stop["stop_seconds"] < 10, (stop["moment"], stop["stop_seconds"])
            assert "interrupted: stopping; what was written is kept" in stop["stderr"], stop["stderr"][-2000:]
            assert stop["left"] == [], (stop["moment"], stop["left"])
    assert [stop["selection"] for stop in stops[:-1]] == [False] * (len(stops) - 1)  # nothing decided half-way
    assert [stop["races"] for stop in stops] == [0, 0] + [1] * (len(stops) - 2)  # one race, restored by name
    assert [s["moment"] for s in stops if "race:" in s["stderr"]][:1] == ["race: 3 candidates"]  # the race began
    assert any("ran before; its finished trials stand" in s["stderr"] for s in stops)  # and was restored
    assert any("epoch 1/3" in s["stderr"] for s in stops)  # the final student was stopped mid-training
    for rerun in (final, again):
        assert rerun["returncode"] == 0 and "Traceback" not in rerun["stderr"], rerun["stderr"][-3000:]
    assert decided(out / "stopped") == decided(out / "straight")  # the same kept student, trials and counts
    spent = {row["candidate"]: row["flops"] for row in read_selection(out / "stopped" / "selection.parquet")
             if row["kind"] == "stage"}
    assert spent["scan"] == 0 and spent["teacher outputs"] == 0  # both from the cache: nothing computed twice
    assert "candidates (" not in again["stderr"] and runs["rewritten"] == []  # a second rerun trains nothing
