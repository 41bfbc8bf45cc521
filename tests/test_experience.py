"""The experience table: what each selection's race measured, as rows a ranking can learn from; appended as one
part per race (atomic, safe for two selections at once, never counted twice), read with one-line errors."""
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.errors import SelkdError
from selkd_ray.experience import label_overlap, race_outcomes, summary, within_task_ranks
from selkd_ray.io.experience import append_experience, experience_parts, read_experience
from selkd_ray.records import TeacherSpec
from selkd_ray.rows import ExperienceRow, ScoreRow, TrialRow

runner = CliRunner()


def test_within_task_ranks_by_hand():
    ranks = within_task_ranks([0.1, 0.3, 0.3, math.nan, 0.9])
    assert ranks[:3] == [0.0, 0.5, 0.5] and math.isnan(ranks[3]) and ranks[4] == 1.0
    assert within_task_ranks([2.0]) == [1.0] and all(math.isnan(r) for r in within_task_ranks([math.nan, None]))


def test_label_overlap_ignores_case_and_separators():
    assert label_overlap(("Three", "five_", "seven"), ("three", "five", "eight")) == pytest.approx(2 / 3)
    assert label_overlap(("Golden-Retriever",), ("golden retriever",)) == 1.0


def spec(teacher_id: str, labels: tuple[str, ...]) -> TeacherSpec:
    return TeacherSpec(teacher_id, f"/zoo/{teacher_id}", "test_resnet", teacher_id * 4, labels, (1, 28, 28), (0.5,),
                       (0.5,), param_count=1000, flops_per_sample=5000)


def score_row(teacher_id: str, nce: float, leep: float) -> ScoreRow:
    return ScoreRow(teacher_id, f"/zoo/{teacher_id}", "test_resnet", teacher_id * 4, "scored", rank=1, score=nce,
                    probe_size=30, scores={"nce": nce, "leep": leep})


def test_a_race_becomes_one_row_per_raced_teacher_against_labels_only(target_task):
    ranked = [score_row("a", 3.0, -1.0), score_row("b", 2.0, -0.5), score_row("c", 1.0, math.nan)]
    specs = {"a": spec("a", ("three", "five", "eight")), "b": spec("b", ("zero", "one"))}
    trials = [TrialRow("a", 0.3, 4, 0.80, status="finished"), TrialRow("a", 1.0, 4, 0.90, status="winner"),
              TrialRow("b", 1.0, 2, 0.60, status="stopped early"), TrialRow("labels-only", 0.0, 4, 0.70,
                                                                             status="finished")]
    rows = {row.teacher_id: row for row in race_outcomes(target_task, ranked, specs, trials)}
    assert sorted(rows) == ["a", "b"]  # label-only is the reference, not an outcome; c never raced
    a, b = rows["a"], rows["b"]
    assert a.outcome == pytest.approx(0.20) and (a.lam, a.epochs, a.labels_only_epochs) == (1.0, 4, 4)  # best trial
    assert b.outcome == pytest.approx(-0.10) and b.epochs == 2
    assert a.scores == {"nce": 1.0, "leep": 0.0} and b.scores == {"nce": 0.5, "leep": 1.0}  # over all 3 ranked
    assert (a.label_overlap, b.label_overlap) == (1.0, 0.0) and a.teachers_scanned == 3
    assert (a.task_hash, a.task_classes, a.validation_images) == (target_task.content_hash, 3,
                                                                  len(target_task.indices("val")))
    failed = [t if t.candidate != "labels-only" else TrialRow("labels-only", 0.0, 0, 0.0, status="failed: x")
              for t in trials]
    assert race_outcomes(target_task, ranked, specs, failed) == []  # nothing to measure against


def outcome(task: str, teacher: str, value: float, nce: float) -> ExperienceRow:
    return ExperienceRow(task, task, 60, 3, teacher, teacher * 4, scores={"nce": nce, "leep": math.nan},
                         outcome=value)


def test_appends_are_parts_a_race_again_rewrites_its_own(tmp_path):
    first = [outcome("t1", "a", 0.1, 1.0), outcome("t1", "b", -0.1, 0.0)]
    append_experience(first, tmp_path / "exp", "race1")
    append_experience(first, tmp_path / "exp", "race1")  # the same selection started again
    append_experience([outcome("t2", "a", 0.2, 0.0)], tmp_path / "exp", "race2")
    rows = read_experience(tmp_path / "exp", {"nce", "leep"})
    assert [(r.task_hash, r.teacher_id, r.outcome) for r in rows] == [("t1", "a", 0.1), ("t1", "b", -0.1),
                                                                       ("t2", "a", 0.2)]
    assert rows[0].scores["nce"] == 1.0 and math.isnan(rows[0].scores["leep"])
    held = summary(rows)
    assert (held["tasks"], held["outcomes"], held["teachers"], held["helped"]) == (2, 3, 2, 2)
    assert held["agreement"]["nce"] == {"tau": 1.0, "tasks": 1}  # t1: nce ranked a above b, and a did better
    assert read_experience(tmp_path / "nowhere") == []


APPEND = """
import sys, time
from selkd_ray.io.experience import append_experience
from selkd_ray.rows import ExperienceRow
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
rows = [ExperienceRow("t", "t", teacher_id=f"{sys.argv[1]}-{i}", teacher_hash=str(i), outcome=0.01 * i)
        for i in range(200)]
append_experience(rows, sys.argv[3], sys.argv[1])
"""


def test_two_processes_append_at_once_and_nothing_is_lost(tmp_path):
    import time

    start = str(time.time() + 3)  # both write at the same instant
    writers = [subprocess.Popen([sys.executable, "-c", APPEND, name, start, str(tmp_path / "exp")])
               for name in ("one", "two")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    rows = read_experience(tmp_path / "exp")
    assert len(rows) == 400 and {r.teacher_id.split("-")[0] for r in rows} == {"one", "two"}
    assert [p.name for p in experience_parts(tmp_path / "exp")] == ["part-one.parquet", "part-two.parquet"]
    assert not [p for p in (tmp_path / "exp").iterdir() if p.name.startswith(".")]  # no staging file left


@pytest.mark.parametrize("make, expected", [
    (lambda p: pq.write_table(pa.table({"x": [1]}), p), "not an experience table (no column 'task_hash')"),
    (lambda p: p.write_bytes(b"PAR1 garbage"), "not a readable Parquet table"),
    (lambda p: append_experience([outcome("t", "a", math.nan, 0.5)], p.parent, "bad"), "outcome at row 0 is nan"),
    (lambda p: append_experience([ExperienceRow("t", "t", scores={"nosuch": 0.5})], p.parent, "bad"),
     "column 'rank_nosuch' ranks a scorer this selkd-ray does not know"),
])
def test_bad_experience_is_one_line_naming_the_file_and_is_left_as_it_was(tmp_path, make, expected):
    part = tmp_path / "exp" / "part-bad.parquet"
    part.parent.mkdir()
    make(part)
    before = part.read_bytes()
    with pytest.raises(SelkdError, match="part-bad.parquet: " + expected.replace("(", r"\(").replace(")", r"\)")):
        read_experience(tmp_path / "exp", {"nce", "leep"})
    assert part.read_bytes() == before


def test_experience_show(tmp_path):
    append_experience([outcome("t1", "a", 0.1, 1.0), outcome("t1", "b", -0.1, 0.0)], tmp_path, "race1")
    shown = runner.invoke(app, ["experience", "show", "--experience", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "1 task(s), 2 outcome(s), 2 teacher(s); a teacher beat labels alone in 1 of 2" in shown.output
    assert "nce            tau +1.00 over 1 task(s)" in shown.output
    document = json.loads(runner.invoke(app, ["experience", "show", "--experience", str(tmp_path), "--json"]).output)
    assert document["outcomes"] == 2 and document["agreement"]["leep"] == {"tau": None, "tasks": 0}
    assert np.isclose(document["mean_outcome"], 0.0)


def without_outcome(part):
    append_experience([outcome("t", "a", 0.1, 0.5)], part.parent, "bad")
    pq.write_table(pq.read_table(part).drop_columns(["outcome"]), part)


def foreign_scores(part):  # a scan's scores table dropped into the folder under a part's name
    pq.write_table(pa.table({"teacher_id": ["t"], "path": ["zoo/t"], "score_nce": [0.5]}), part)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"not parquet at all"), "not a readable Parquet table"),
    (foreign_scores, "not an experience table"),
    (lambda p: append_experience([outcome("t", "a", math.nan, 0.5)], p.parent, "bad"), "outcome at row 0 is nan"),
    (without_outcome, "outcome"),
    (lambda p: append_experience([ExperienceRow("t", "t", scores={"foo": 0.5})], p.parent, "bad"),
     "column 'rank_foo' ranks a scorer this selkd-ray does not know"),
])
def test_select_refuses_a_bad_experience_part_in_one_line_before_any_work(tiny_zoo, task_path, tmp_path, make,
                                                                          expected):
    """Issue 44.4: `select --experience DIR` checks the table as every reader does, before its scan: one line
    naming the part, exit 2, nothing written to the output and the part as it was."""
    part = tmp_path / "exp" / "part-bad.parquet"
    part.parent.mkdir()
    make(part)
    before = part.read_bytes()
    result = runner.invoke(app, ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out",
                                 str(tmp_path / "out"), "--experience", str(part.parent)])
    assert result.exit_code == 2, result.output[-2000:]
    line, = result.output.strip().splitlines()
    assert line.startswith(f"error: {part}: ") and expected in line, line
    assert not (tmp_path / "out" / "scores.parquet").exists() and part.read_bytes() == before
    assert [p.name for p in part.parent.iterdir()] == ["part-bad.parquet"]  # nothing appended


@pytest.mark.parametrize("command", ["show", "fit"])
def test_experience_commands_refuse_a_folder_that_does_not_exist(tmp_path, command):
    """Issue 44.5: a mistyped --experience is one line naming it, exit 2, not an empty table; nothing is made."""
    result = runner.invoke(app, ["experience", command, "--experience", str(tmp_path / "nosuch")])
    assert result.exit_code == 2, result.output
    line, = result.output.strip().splitlines()
    assert line.startswith(f"error: --experience: {tmp_path / 'nosuch'} is not a folder"), line
    assert not (tmp_path / "nosuch").exists()
