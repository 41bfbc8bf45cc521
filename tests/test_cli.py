"""The CLI through Typer's test runner, and through a real subprocess where a fresh process matters."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.io.tasks import write_task
from selkd_ray.records import Task

runner = CliRunner()


COMMANDS = [["demo"], ["zoo", "index"], ["scan"], ["select"], ["distill"], ["history"], ["report"], ["scorers"],
            ["experience", "show"], ["experience", "fit"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and "Example: selkd" in result.output


def test_every_command_is_covered_and_exit_codes_are_documented():
    from typer.main import get_command

    group = get_command(app)
    names = set()
    for name, command in group.commands.items():  # a group's commands by their full names ("zoo index")
        names |= {f"{name} {sub}" for sub in command.commands} if hasattr(command, "commands") else {name}
    assert names == {" ".join(c) for c in COMMANDS}
    assert "Exit codes: 0 success; 1" in runner.invoke(app, ["--help"]).output


def test_quiet_and_json_keep_progress_off_stdout(ray_session, tiny_zoo, task_path, tmp_path):
    quiet = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                "--scorer", "leep", "--probe-per-class", "4", "--quiet"])
    assert quiet.exit_code == 0 and "round 1/1" not in quiet.output and "scored" not in quiet.stderr
    assert quiet.stdout.splitlines()[2].split()[:2] == ["1", "own-classes"]
    as_json = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                  "--scorer", "leep", "--probe-per-class", "4", "--json"])
    assert json.loads(as_json.stdout)["cached"] == 3


def test_scorers_lists_the_registry():
    result = runner.invoke(app, ["scorers"])
    assert result.exit_code == 0, result.output
    listed = dict(line.split(": ", 1) for line in result.output.strip().splitlines())
    assert {"ot", "nce", "leep", "lead", "aggregate", "learned"} <= set(listed["scorers"].split(", "))
    assert "conditional" in listed["cost builders"].split(", ")


def test_scan_and_distill_through_the_cli(ray_session, tiny_zoo, task_path, tmp_path):
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    ranking = [line.split() for line in result.output.splitlines() if line.strip().startswith("1 ")]
    assert ranking and ranking[0][1] == "own-classes"
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path),
                                 "--scan", str(tmp_path / "s" / "scores.parquet"), "--epochs", "1",
                                 "--out", str(tmp_path / "students")])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output


def test_zoo_index_names_a_bad_config(zoo_copy):
    config_path = zoo_copy / "own-classes" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_classes"] = 4
    config_path.write_text(json.dumps(config))
    result = runner.invoke(app, ["zoo", "index", str(zoo_copy)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "own-classes/config.json: label_names" in errors[0] and "num_classes is 4" in errors[0]
    assert "Traceback" not in result.output


def one_class_task(path):
    images = np.zeros((4, 1, 8, 8), np.uint8)
    return write_task(Task("bad", images, np.zeros(4, int), np.array(["train"] * 4), ("only",)), path)


def labels_outside_task(path):
    images = np.zeros((4, 1, 8, 8), np.uint8)
    return write_task(Task("bad", images, np.array([0, 1, 2, 1]), np.array(["train"] * 4), ("a", "b")), path)


@pytest.mark.parametrize("make, expected", [(one_class_task, "label_names: expected at least two classes, got 1"),
                                            (labels_outside_task, "label: value 2 at row 2 is outside the 2 label names ['a', 'b']")])
def test_bad_task_gets_one_line(tiny_zoo, tmp_path, make, expected):
    task = make(tmp_path / "task.parquet")
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {task}: {expected}"]


def test_address_where_no_ray_answers(tiny_zoo, task_path, tmp_path):
    """A fresh process (no Ray yet) pointed at a closed port says so in one line."""
    done = subprocess.run([sys.executable, "-m", "selkd_cli.main", "scan", "--zoo", str(tiny_zoo), "--task",
                           str(task_path), "--out", str(tmp_path), "--address", "127.0.0.1:9"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --address: no Ray cluster answers at 127.0.0.1:9")
    assert "Traceback" not in done.stderr


def test_scan_with_a_budget_reports_spending_and_halving(ray_session, tiny_zoo, task_path, tmp_path):
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                 "--scorer", "leep", "--probe-per-class", "8", "--budget", "1e12", "--eta", "2",
                                 "--min-probe", "2"])
    assert result.exit_code == 0, result.output
    assert "of a 1e+12 FLOPs budget" in result.output
    assert "dropped after round 1:" in result.output and "dropped after round 2:" in result.output
    # the same scan again, as a scheduler reruns it: a fresh process, every teacher answered by the cache, so it
    # loads no model library (timm and torchvision's import was 1.5 s of a 6.6 s rescan) and runs no teacher
    arguments = ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path), "--scorer", "leep",
                 "--probe-per-class", "8", "--budget", "1e12", "--eta", "2", "--min-probe", "2"]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    again = subprocess.run([sys.executable, "-X", "importtime", "-m", "selkd_cli.main", *arguments],
                           capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 teachers run to the end" in again.stdout and "spent 0 FLOPs" in again.stdout, again.stdout
    imported = {line.split("|")[-1].strip() for line in again.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and not {"timm", "torchvision"} & imported


def test_bad_budget_is_one_line(tiny_zoo, task_path, tmp_path):
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                 "--budget", "plenty"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --budget: 'plenty' is not a budget; expected FLOPs like 2e9 "
                                                  "or 2G, or seconds like 300s, 5min, 1h"]


def test_the_live_bar_draws_steps_and_logs_only_what_is_logged():
    """On a terminal: every Step moves the bar; only logged messages (and plain strings) print as lines."""
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from selkd_cli.main import Display
    from selkd_ray.progress import Step
    from selkd_ray.plans.halving import ScanEvent

    out = io.StringIO()
    display = Display()
    display.bar = Progress(TextColumn("{task.description} {task.completed}/{task.total} {task.fields[counts]}"),
                           console=Console(file=out, force_terminal=True, width=120, color_system=None,
                                                           highlight=False))
    with display:
        display(ScanEvent("scan", 1, 3, "scored t1", "failed 0, cached 0; 5 FLOPs", False, "scored", "t1"))
        display(ScanEvent("scan", 1, 3, "round 2: 3 teachers", "", True, "round"))
        display(Step("distill", 2, 4, "student: epoch 2/4"))
        display("a plain line")
    text = out.getvalue()
    assert "round 2: 3 teachers" in text and "student: epoch 2/4" in text and "a plain line" in text
    assert "scored t1" not in text  # a bar-only update
    assert "distill 2/4" in text and "scan 1/3" in text  # both stages drew their bars


def test_a_bad_option_is_answered_before_torch_timm_or_ray_load():
    """The options' checks run before the library's heavy imports: a typo costs a user half a second, not ten."""
    import subprocess
    import sys

    code = ("import sys\nfrom selkd_cli.main import app\n"
            "for args in (['distill', '--task', 'x.parquet', '--epochs', '0'], "
            "['select', '--zoo', 'z', '--task', 'x', '--mixture', '1'], "
            "['scan', '--zoo', 'z', '--task', 'x', '--probe-per-class', '0']):\n"
            "    try:\n        app(args)\n    except SystemExit as done:\n        assert done.code == 2, done.code\n"
            "print(sorted(m for m in ('torch', 'timm', 'ray', 'ot') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    assert done.stderr.count("error: ") == 3 and "Traceback" not in done.stderr
