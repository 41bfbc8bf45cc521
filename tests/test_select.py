"""The whole selection on a real local Ray: scan, Ray Tune race, Ray Train distillation, the guard."""
import json
import re
import shutil
import subprocess
import sys
import math
from dataclasses import replace

import pytest
from helpers.background import finished
from helpers.network import connects, off_loopback, ray_lines
from helpers.select_twice import outputs_flops, race_budget
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.io.experience import read_experience
from selkd_ray.io.results import read_selection
from selkd_ray.plans.select import epoch_costs, select_student, selection_costs
from selkd_ray.selection import SelectConfig

runner = CliRunner()
SCAN = ScanConfig(scorers=("leep",), probe_per_class=10)


def test_a_random_label_teacher_forced_to_the_top_with_no_budget_for_a_race(runner_pool, tiny_zoo, target_task,
                                                                              tmp_path):
    """The random-label teacher is pinned to the top of the shortlist and the budget leaves nothing for a race,
    so it goes straight to distillation: the guard must not hand back a student worse than label-only."""
    distill = DistillConfig(epochs=6)
    distilled_epoch, labels_epoch = epoch_costs(target_task, SelectConfig(SCAN, distill))
    budget = 6 * (distilled_epoch + labels_epoch) / 0.95  # the final stage and the scan's share, nothing more
    config = SelectConfig(SCAN, distill, budget=f"{budget:.6g}", pinned=("random",), shortlist=2, scan_share=0.05)
    result = select_student(tiny_zoo, target_task, tmp_path, config, runners=runner_pool)
    assert "no budget left for a race" in result.summary and result.trials == []
    assert result.teacher == "random"  # forced to the top, distilled without a race
    stages = {s.candidate: s for s in result.stages}
    assert list(stages) == ["scan", "teacher outputs", "final random", "final labels-only"]
    assert stages["teacher outputs"].flops == outputs_flops(tiny_zoo, "random", target_task)  # charged
    assert sum(s.flops for s in result.stages) <= float(f"{budget:.6g}")
    distilled, labels = stages["final random"], stages["final labels-only"]
    assert result.val_accuracy >= labels.val_accuracy  # never worse on the split the guard may look at
    if result.kept == "labels-only":
        assert result.test_accuracy == labels.test_accuracy and "LABEL-ONLY" in result.message
    else:  # kept only when it won on validation by more than noise
        assert distilled.val_accuracy > labels.val_accuracy and "kept the student distilled" in result.message
    assert result.test_accuracy >= labels.test_accuracy - 0.05
    decision = [row for row in read_selection(result.selection_path) if row["kind"] == "decision"]
    assert decision[0]["kept"] == result.kept and decision[0]["candidate"] == "random"


# `selkd select` twice, fresh processes with their own Ray (the first under strace): beside the suite
SELECT_TWICE = ("tests/helpers/select_twice.py", "{out}", "{zoo}", "{task}")


@pytest.mark.background("select-twice", *SELECT_TWICE, lane="tests")
def test_select_races_the_shortlist_under_one_budget_and_reports_it(tiny_zoo, target_task, task_path):
    distilled_epoch, labels_epoch = epoch_costs(target_task, SelectConfig(SCAN, DistillConfig(epochs=2)))
    one_epoch, outputs = distilled_epoch + labels_epoch, outputs_flops(tiny_zoo, "own-classes", target_task)
    evaluation = selection_costs(target_task, SelectConfig(SCAN, DistillConfig(epochs=2))).evaluation(2)
    # what the commands were given (helpers/select_twice.py): 2 race epochs, where forgetting the outputs would
    # have allowed 3
    budget = race_budget(tiny_zoo, target_task)
    ran, job = finished("select-twice", SELECT_TWICE)
    assert ran.returncode == 0, ran.stderr[-3000:]
    first = json.loads((job / "first.json").read_text())
    assert first["returncode"] == 0, first["stderr"][-3000:]
    before, tmp_path = job / "first-select", job / "select"  # the folder as the first run left it, and now
    if first["traced"]:  # the selection runs once, and under strace: no packet may leave loopback
        calls = (job / "strace.log").read_text(errors="replace").splitlines()
        assert connects(calls) > 10  # it did trace
        assert ray_lines(first["stderr"]) == [], first["stderr"][-3000:]  # the terminal shows our lines, not Ray's
        outside = [line for line in calls if off_loopback(line)]
        assert not outside, "\n".join(outside[:20])
    document = json.loads(first["stdout"])
    trials = document["trials"]
    assert sorted(t["candidate"] for t in trials) == ["labels-only", "own-classes"]
    assert sum(t["status"] == "winner" for t in trials) == 1 and all(t["epochs"] >= 1 for t in trials)
    stages = {s["candidate"]: s for s in document["stages"]}
    assert list(stages)[:3] == ["scan", "teacher outputs", "race"]
    assert stages["teacher outputs"]["flops"] == outputs  # the shortlisted teacher's outputs, paid before the race
    # the race's epochs are chosen from what is left once the scan, the outputs and the final stage are paid
    epochs = min(5, math.floor((budget - stages["scan"]["flops"] - outputs - 2 * one_epoch - evaluation) / one_epoch))
    assert epochs == 2 and all(t["epochs"] == epochs for t in trials)  # grace 2: every trial runs what it may
    assert sum(s["flops"] for s in document["stages"]) <= budget  # scan + outputs + race + final: one budget
    winner = next(t for t in trials if t["status"] == "winner")
    assert document["teacher"] == winner["candidate"]
    # the guard decided on the race's verdict, cross-fitted over every validation image, before the final stage:
    # what it kept is what its rule says on the paired counts (no prior: the experience held no other task), and
    # only the student it kept was trained in full (refit on the train and validation labels)
    decision, = [row for row in read_selection(before / "selection.parquet") if row["kind"] == "decision"]
    finals = [name for name in stages if name.startswith("final ")]
    if winner["candidate"] == "labels-only":
        assert document["kept"] == "labels-only" and finals == ["final labels-only"]
    else:
        b, c, n = decision["better"], decision["worse"], decision["images"]
        assert n == len(target_task.indices("val")) and "cross-fitted" in decision["evidence"]
        assert decision["prior_tasks"] == 0  # the experience held no other task: no prior
        kept = b > c and (b - c) / n > 0.5 * math.sqrt(b + c) / n
        assert (document["kept"] == "distilled") == kept, document["message"]
        assert finals == [f"final {document['teacher']}" if kept else "final labels-only"]
        assert document["message"].startswith(f"kept the student distilled from {document['teacher']}" if kept
                                              else "kept the LABEL-ONLY student")
    assert stages[finals[0]]["test_accuracy"] == document["test_accuracy"]
    assert document["val_accuracy"] == next(t["val_accuracy"] for t in trials if t["candidate"] ==
                                            ("labels-only" if document["kept"] == "labels-only" else winner["candidate"]))

    # the race's outcome is experience: the raced teacher against the label-only trial, on the same images
    experience = read_experience(before / "experience")
    assert document["experience"] and len(experience) == 1 and experience[0].teacher_id == "own-classes"
    raced = {t["candidate"]: t["val_accuracy"] for t in trials}
    assert experience[0].outcome == pytest.approx(raced["own-classes"] - raced["labels-only"])
    assert experience[0].scores["leep"] == 1.0  # the scan's best teacher by leep

    # the one final student, in one Ray Train run
    final_runs = [path.name for path in (before / "students" / "runs").iterdir() if path.is_dir()]
    assert len(final_runs) == 1, final_runs
    reported = {path.relative_to(before): path.read_text() for path in (before / "race").glob("*/*/result.json")}
    assert len(reported) == 2  # one per trial
    race_files = {path.relative_to(before): path.stat().st_mtime_ns for path in (before / "race").rglob("*")
                  if path.is_file()}
    # the same selection started again, as a user would: a fresh process with no Ray running, its scan answered
    # wholly by the cache (it once crashed there: no teacher to run, so Ray was never started before the race)
    again = json.loads((job / "again.json").read_text())
    assert again["returncode"] == 0, again["stderr"][-3000:]
    assert "Traceback" not in again["stderr"] and ray_lines(again["stderr"]) == [], again["stderr"][-3000:]
    rerun = json.loads(again["stdout"])  # the same selection again: nothing is recomputed
    assert rerun["trials"] == trials and len(list((tmp_path / "race").iterdir())) == 1
    now = {path.relative_to(tmp_path): path.read_text() for path in (tmp_path / "race").glob("*/*/result.json")}
    assert now == reported  # the race restored: no trial trained again
    # every trial had ended, so the race was read as its files stand: Tune did not run again (it would have
    # rewritten its experiment state)
    assert {path.relative_to(tmp_path): path.stat().st_mtime_ns for path in (tmp_path / "race").rglob("*")
            if path.is_file()} == race_files
    again_rows = read_experience(tmp_path / "experience")  # its outcome rewritten, not counted twice
    assert [(r.teacher_id, r.outcome, r.scores) for r in again_rows] == \
        [(r.teacher_id, r.outcome, r.scores) for r in experience]
    assert [path.name for path in (tmp_path / "students" / "runs").iterdir() if path.is_dir()] == final_runs
    spent = {s["candidate"]: s["flops"] for s in rerun["stages"]}
    assert spent["scan"] == 0 and spent["teacher outputs"] == 0  # cached
    assert (rerun["teacher"], rerun["kept"], rerun["test_accuracy"]) == \
        (document["teacher"], document["kept"], document["test_accuracy"])  # the finished final runs, reused

    report = runner.invoke(app, ["report", "--out", str(tmp_path)])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report.html").read_text()
    assert "Selection: race and guard" in page and "spent against budget by stage" in page


def test_a_budget_too_small_for_the_final_distillation_is_one_line(tiny_zoo, task_path, tmp_path):
    result = runner.invoke(app, ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                 "--budget", "1000"])
    assert result.exit_code == 2
    line, = result.output.strip().splitlines()
    assert line.startswith("error: --budget: 1e+03 FLOPs leaves 800 FLOPs for the final distillation")


@pytest.mark.parametrize("grid", ["1,x", "-1"])
def test_a_bad_lambda_grid_is_one_line(tiny_zoo, task_path, tmp_path, grid):
    result = runner.invoke(app, ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--lambda-grid", grid])
    assert result.exit_code == 2 and result.output.startswith("error: --lambda-grid:")


def test_a_selection_on_an_output_another_process_writes_is_one_line(tiny_zoo, task_path, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom selkd_ray.io.lock import ScanLock\n"
                               f"with ScanLock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    line, = result.output.strip().splitlines()
    assert "another scan or selection is writing this output (pid" in line


@pytest.mark.parametrize("option, expected", [
    (["--gpus", "1"], "error: --gpus: 1 GPU worker(s) asked for, but the cluster has 0 GPU(s)"),
    (["--teacher", "nosuch"], "error: --teacher: 'nosuch' is not a teacher of ")])
def test_select_with_more_gpus_than_the_cluster_has_is_refused_before_the_scan(ray_session, tiny_zoo, task_path,
                                                                              tmp_path, option, expected):
    """Refused up front (as distill refuses), not after a scan and a race: nothing is written, not even the
    output folder (issue 44: `--teacher nosuch` left an empty one)."""
    result = runner.invoke(app, ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out",
                                 str(tmp_path / "out"), *option])
    assert result.exit_code == 2, result.output
    line, = result.output.strip().splitlines()
    assert line.startswith(expected), line
    assert list(tmp_path.iterdir()) == []


def test_the_selections_final_student_is_selkd_distill_refit_from_the_same_teacher(runner_pool, tiny_zoo,
                                                                                   target_task, tmp_path):
    """Issue 41.4: the student a selection hands back is the one `distill --refit` gives from the same teacher (or
    labels alone) with the same settings: its stage loses nothing to how it picks an epoch. The selection reads
    a shared experience table of three past tasks, so its guard decides with a prior, said in its decision row."""
    from selkd_ray.api import distill
    from selkd_ray.io.experience import append_experience
    from selkd_ray.rows import ExperienceRow

    experience = tmp_path / "team-experience"
    for task, outcome in (("past-a", 0.04), ("past-b", 0.02), ("past-c", 0.06)):
        append_experience([ExperienceRow(task, task, teacher_id="t", outcome=outcome)], experience, task)
    config = SelectConfig(replace(SCAN, experience=str(experience)), DistillConfig(epochs=2), shortlist=1,
                          race_epochs=1)
    lines = []
    result = select_student(tiny_zoo, target_task, tmp_path / "select", config, runners=runner_pool,
                            progress=lambda line: lines.append(str(line)))
    assert any(line.startswith("guard: prior") and "3 past task" in line for line in lines), lines
    decision, = [row for row in read_selection(result.selection_path) if row["kind"] == "decision"]
    assert decision["prior_tasks"] == 3 and decision["prior_source"] == str(experience)
    assert decision["prior_mean"] == pytest.approx(0.04)
    teacher = None if result.kept == "labels-only" else tiny_zoo / result.teacher
    alone = distill(target_task, teacher, tmp_path / "distill", DistillConfig(epochs=2, refit=True, keep="last",
                                                                            lam=result.lam),
                    cache_dir=tmp_path / "select" / "cache")
    assert alone.test_accuracy == pytest.approx(result.test_accuracy, abs=0.02), (result.kept, result.message)
    assert len(alone.history) == 2 and alone.best_epoch == 1  # the last epoch, kept


def test_a_race_folder_stopped_before_tune_recorded_its_state_starts_afresh_and_ends_the_same(
        runner_pool, tiny_zoo, target_task, tmp_path):
    """Issue 44.1: a stop between Ray Tune's tuner.pkl and its first experiment state left a race folder Tune
    cannot restore (it raised, and the output was stuck). It is recognised as incomplete: the race starts
    afresh, says so in one line, and ends as the uninterrupted race did (same seed); a second rerun restores."""
    config = SelectConfig(SCAN, DistillConfig(epochs=1), shortlist=1, race_epochs=2)
    out = tmp_path / "out"
    first = select_student(tiny_zoo, target_task, out, config, runners=runner_pool)
    experiment, = (out / "race").iterdir()
    for path in experiment.iterdir():  # what a stop right after Tune's first write leaves
        if path.name != "tuner.pkl":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    lines = []
    again = select_student(tiny_zoo, target_task, out, config, runners=runner_pool,
                           progress=lambda line: lines.append(str(line)))
    assert any("was stopped before Ray Tune recorded its state; the race starts afresh" in line for line in lines)
    trials = lambda result: sorted((t.candidate, t.epochs, t.val_accuracy, t.status) for t in result.trials)
    assert trials(again) == trials(first) and (again.kept, again.teacher) == (first.kept, first.teacher)
    assert again.test_accuracy == first.test_accuracy
    lines.clear()
    third = select_student(tiny_zoo, target_task, out, config, runners=runner_pool,
                           progress=lambda line: lines.append(str(line)))
    assert any("ran before; its finished trials stand" in line for line in lines) and trials(third) == trials(first)
    assert len(list((out / "race").iterdir())) == 1


def test_where_no_shortlisted_teacher_knows_every_class_their_covering_mixture_races(runner_pool, tiny_zoo,
                                                                                    target_task, tmp_path):
    """Issue 42.3: the digits-0/1 teacher and the random one pinned (neither knows three, five or eight): the
    race holds the mixture the coverage rule chose, said in one line and in its trial row with the rule;
    `--no-cover` races the two alone. (Where the scan's best knows every class, as own-classes does, the
    other selections' races hold no mixture: test_stop_anywhere's "race: 3 candidates".)"""
    config = SelectConfig(SCAN, DistillConfig(epochs=1), shortlist=2, race_epochs=1, pinned=("digits-01", "random"))
    lines = []
    result = select_student(tiny_zoo, target_task, tmp_path / "cover", config, runners=runner_pool,
                            progress=lambda line: lines.append(str(line)))
    said = [line for line in lines if line.startswith("mixture: no shortlisted teacher knows every class")]
    assert len(said) == 1 and "digits-01" in said[0], lines
    assert result.mixture and result.mixture[0] == "digits-01" and sorted(result.mixture) == ["digits-01", "random"]
    rows = {row["candidate"]: row for row in read_selection(result.selection_path) if row["kind"] == "trial"}
    mixture = rows["mixture:" + "+".join(result.mixture)]
    assert "covering: digits-01 recalls" in mixture["weights"]
    alone = select_student(tiny_zoo, target_task, tmp_path / "no-cover", replace(config, cover=False),
                           runners=runner_pool)
    assert not alone.mixture and sorted(t.candidate for t in alone.trials) == ["digits-01", "labels-only", "random"]
