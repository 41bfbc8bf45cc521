"""`selkd select` as a user runs it, twice into one folder, each a fresh process with its own embedded Ray: the
first under strace (no packet may leave loopback), then the same command again (a scan answered wholly by the
cache, a race that already ended). The folder as the first run left it is copied aside before the second.

    python tests/helpers/select_twice.py OUT ZOO TASK

OUT/select: the selection's folder; OUT/first-select: its copy after the first run; OUT/strace.log: the first
run's trace; OUT/first.json, OUT/again.json: each run's exit code, stdout and stderr. Needs nothing of the
suite's Ray: test_select runs it beside the suite (helpers/background.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.network import strace_command  # noqa: E402

TEACHER = "own-classes"  # the tiny zoo's best teacher by leep: the shortlist of one


def outputs_flops(zoo: Path, teacher_id: str, task) -> float:
    """A teacher's forward pass over the student images: what its outputs for distillation cost."""
    from selkd_ray.training.student_data import student_images, teacher_spec

    return float(teacher_spec(Path(zoo) / teacher_id).flops_per_sample * len(student_images(task)))


def race_budget(zoo: Path, task) -> float:
    """The final stage (2 epochs, and the students' test and guard passes), the shortlisted teacher's outputs on
    the student images (0.27 of an epoch here), and a race of 2.9 epochs less the scan's spending and the
    evaluation: 2 race epochs, where forgetting the outputs would have allowed 3."""
    from selkd_ray.config import DistillConfig, ScanConfig
    from selkd_ray.plans.select import epoch_costs
    from selkd_ray.selection import SelectConfig

    distilled, labels = epoch_costs(task, SelectConfig(ScanConfig(scorers=("leep",), probe_per_class=10),
                                                       DistillConfig(epochs=2)))
    return float(f"{4.9 * (distilled + labels) + outputs_flops(zoo, TEACHER, task):.6g}")


def arguments(zoo: Path, task_path: Path, out: Path, budget: float) -> list[str]:
    return ["select", "--zoo", str(zoo), "--task", str(task_path), "--out", str(out), "--scorer", "leep",
            "--probe-per-class", "10", "--shortlist", "1", "--epochs", "2", "--race-epochs", "5",
            "--budget", f"{budget:.6g}", "--json"]


def run(command: list[str]) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def main(out: Path, zoo: Path, task_path: Path) -> None:
    from selkd_ray.io.tasks import load_task

    selection = out / "select"
    command = arguments(zoo, task_path, selection, race_budget(zoo, load_task(task_path)))
    traced = shutil.which("strace") is not None
    first = run(strace_command(out / "strace.log", command) if traced else
                [sys.executable, "-m", "selkd_cli.main", *command])
    (out / "first.json").write_text(json.dumps({**first, "traced": traced}))
    if first["returncode"] == 0:
        shutil.copytree(selection, out / "first-select")  # copy2: each file's mtime kept to the nanosecond
        (out / "again.json").write_text(json.dumps(run([sys.executable, "-m", "selkd_cli.main", *command])))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
