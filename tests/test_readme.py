"""Every Python block of the README, run as a user pastes it: in a folder holding a zoo (the tests' tiny one)
and a task, sharing the suite's Ray. An example that stops working fails here."""
import contextlib
import io
import os
import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_api_block_runs_as_written(ray_session, tiny_zoo, task_path, tmp_path):
    blocks = python_blocks()
    assert len(blocks) == 1  # the Python API section: a new block needs its own folder set-up here
    shutil.copytree(tiny_zoo, tmp_path / "zoo")
    shutil.copy(task_path, tmp_path / "task.parquet")
    here, printed, names = os.getcwd(), io.StringIO(), {"__name__": "readme"}
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(blocks[0], str(README), "exec"), names)
    finally:
        os.chdir(here)
    lines = printed.getvalue().splitlines()  # what the example printed, and nothing of Ray's
    assert len(lines) >= 3 and lines[0].startswith("own-classes ")  # the teacher of the target's own classes
    kept, teacher = lines[2].split()[:2]  # what the guard kept, and the race's winner (own-classes or labels alone)
    assert kept in ("distilled", "labels-only")
    assert teacher in ("own-classes", "labels-only") or teacher.startswith("mixture:own-classes+")
    # the race held the top two alone, their mixture (weighed by their scores, the top one more) and labels alone
    assert lines[3].startswith("('own-classes', ") and "'mixture:own-classes+" in lines[3]
    assert lines[3].count("'labels-only'") == 1
    assert lines[4].startswith("zoo/own-classes + zoo/digits-01 (0.7, 0.3) ")
    assert (tmp_path / "out" / "scores.parquet").is_file() and list((tmp_path / "out" / "select" / "experience").iterdir())
    # the mixture's members and weights in the selection's rows and in the report a person reads
    from selkd_ray.io.results import read_selection
    from selkd_ray.mixture import describe
    from selkd_ray.reports.html import build_report

    chosen = names["chosen"]
    weights = describe(chosen.mixture, chosen.mixture_weights)
    assert weights.startswith("0.") and " own-classes + " in weights
    rows = [row for row in read_selection(tmp_path / "out" / "select" / "selection.parquet") if row["kind"] == "trial"]
    assert {row["weights"] for row in rows if row["candidate"].startswith("mixture:")} == {weights}
    assert {row["weights"] for row in rows if not row["candidate"].startswith("mixture:")} == {""}
    assert f"<td class=\"l\">{weights}</td>" in build_report(tmp_path / "out" / "select")
