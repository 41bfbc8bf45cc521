"""bench/time_to_student.py --quick: `selkd select` and `selkd distill` as a user runs them (fresh processes,
fresh folders) on the tiny zoo, joined to the suite's Ray as a user beside a cluster would; the script's
figures are present and add up."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "time_to_student.py"


def test_quick_time_to_a_student_times_select_against_one_distill(ray_session, tiny_zoo, task_path, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)  # the CLI joins it
    spec = importlib.util.spec_from_file_location("bench_time_to_student", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    messages = []
    figures = module.run(tiny_zoo, task_path, tmp_path, 1, True, say=messages.append)
    row, = figures["rows"]
    assert (tiny_zoo / row["teacher"]).is_dir() and row["ratio"] == figures["ratio"]
    assert row["select_s"] > 0 and row["distill_s"] > 0 and row["ratio"] == row["select_s"] / row["distill_s"]
    assert row["scan_s"] > 0 and row["final_s"] > 0 and row["race_s"] == 0  # --quick: no race
    assert row["scan_s"] + row["outputs_s"] + row["race_s"] + row["final_s"] < row["select_s"]
    assert "median of 1 pair(s)" in messages[-1] and "goal <= 1.5x" in messages[-1]
    assert json.loads((tmp_path / "time-to-student.json").read_text())["quick"] is True
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["distill-0", "select-0"]
