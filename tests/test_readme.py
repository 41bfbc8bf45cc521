"""Every Python block of the README, run as a user pastes it into a fresh Python: in a folder holding a zoo (the
tests' tiny one) and a task, with its own embedded Ray. An example that stops working fails here.

This file run as a script (`python tests/test_readme.py OUT ZOO TASK`) runs the block in OUT, what it printed on
stdout, and writes the selection it chose to OUT/chosen.json; the suite runs it beside the other tests
(helpers/background.py) and the test reads both."""
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers.background import finished

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = ("tests/test_readme.py", "{out}", "{zoo}", "{task}")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def run_block(folder: Path, zoo: Path, task: Path) -> None:
    """The README's Python block, run in `folder` beside a copy of the zoo and the task, as a user runs it."""
    block, = python_blocks()
    shutil.copytree(zoo, folder / "zoo")
    shutil.copy(task, folder / "task.parquet")
    os.chdir(folder)
    names = {"__name__": "__main__"}
    exec(compile(block, str(README), "exec"), names)
    chosen = names["chosen"]
    (folder / "chosen.json").write_text(json.dumps({"mixture": chosen.mixture, "weights": chosen.mixture_weights}))


@pytest.mark.background("readme-block", *BLOCK, lane="tests")
def test_the_readme_python_api_block_runs_as_written(tiny_zoo, task_path):
    blocks = python_blocks()
    assert len(blocks) == 1  # the Python API section: a new block needs its own folder set-up here
    done, tmp_path = finished("readme-block", BLOCK)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()  # what the example printed, and nothing of Ray's
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

    chosen = json.loads((tmp_path / "chosen.json").read_text())
    weights = describe(tuple(chosen["mixture"]), tuple(chosen["weights"]))
    assert weights.startswith("0.") and " own-classes + " in weights
    rows = [row for row in read_selection(tmp_path / "out" / "select" / "selection.parquet") if row["kind"] == "trial"]
    assert {row["weights"] for row in rows if row["candidate"].startswith("mixture:")} == {weights}
    assert {row["weights"] for row in rows if not row["candidate"].startswith("mixture:")} == {""}
    assert f"<td class=\"l\">{weights}</td>" in build_report(tmp_path / "out" / "select")


if __name__ == "__main__":
    run_block(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
