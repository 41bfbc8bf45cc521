"""Commands whose point is a fresh process with its own Ray, run beside the suite (helpers/background.py): the
README's demo as its first command runs it (the whole demo: a zoo trained, scanned, three students), and the
bench scripts whose figures are about fresh processes (indexing on 1 against 2 workers, the driver's memory, a
realistic zoo scanned cold and end to end, `selkd select` against `selkd distill` on the demo's zoo and task as
its docstring runs it) in their `--quick` modes. Each test checks that the command ran and
printed what it promises whole, so one that breaks fails here the day it breaks."""
import json
import re

import pytest

from helpers.background import finished

NUMBER = r"[\d.]+"
# the README's `selkd demo`, into a folder of its own, its students at 2 epochs rather than 30 and its twelve teachers
# at 1 rather than 4 (the same path: the zoo's teachers trained, the scan, the select plan, three students): the
# suite waited 140 s longer for 30 student epochs, and the teachers' 4 epochs were 67 of the demo's 100 s of CPU
DEMO = ("-m", "selkd_cli.main", "demo", "--out", "{out}", "--epochs", "2", "--teacher-epochs", "1")
INDEX = ("bench/index.py", "--quick", "--out", "{out}")
TEACHERS = ("bench/memory.py", "teachers", "--quick", "--out", "{out}")
IMAGES = ("bench/memory.py", "images", "--quick", "--out", "{out}")
REALISTIC = ("bench/realistic.py", "--quick", "--out", "{out}")
# after the demo (the jobs run in this order): its zoo and task, as a user runs the bench after `selkd demo`
TIME_TO_STUDENT = ("bench/time_to_student.py", "--quick", "--pairs", "1", "--zoo", "{out:demo}/zoo", "--task",
                   "{out:demo}/task.parquet", "--out", "{out}")


def printed(name: str, argv: tuple[str, ...]) -> str:
    done, _ = finished(name, argv)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


@pytest.mark.background("index", *INDEX)
def test_quick_index_benchmark_times_one_worker_against_two():
    out = printed("index", INDEX)
    assert "zoo: 30 tiny timm teachers" in out
    assert re.search(rf"pair 1: 1 worker\(s\): {NUMBER} s", out) and re.search(rf"pair 1: 2 worker\(s\): {NUMBER} s", out)
    figures = re.search(rf"index 30 new teachers on Ray Data: 1 worker ({NUMBER}) s, 2 workers ({NUMBER}) s "
                        rf"\(medians of 1\); speed-up ({NUMBER})x \(goal >= 1.8x\)", out)
    assert figures, out[-2000:]
    one, two, ratio = map(float, figures.groups())
    assert one > 0 and two > 0 and ratio == pytest.approx(one / two, rel=0.05)  # printed rounded


def memory_figures(out: str, kind: str, sizes: tuple[int, int], goal: int) -> None:
    rows = re.findall(rf"(\d+) {kind}: RSS after imports ({NUMBER}) MiB, peak ({NUMBER}) MiB, growth (-?\d+) MiB", out)
    assert [int(size) for size, *_ in rows] == list(sizes), out[-2000:]
    for _, after, peak, growth in rows:  # the driver's figures: a real process, its growth as printed
        assert 200 < float(after) <= float(peak) and int(growth) == pytest.approx(float(peak) - float(after), abs=1)
    total = re.search(rf"growth from {sizes[0]} to {sizes[1]} {kind}: ([+-]\d+) MiB \(goal <= {goal} MiB\)", out)
    assert total and int(total.group(1)) == pytest.approx(int(rows[1][3]) - int(rows[0][3]), abs=1), out[-2000:]


@pytest.mark.background("memory-teachers", *TEACHERS)
def test_quick_memory_benchmark_scans_two_zoo_sizes_in_fresh_drivers():
    memory_figures(printed("memory-teachers", TEACHERS), "teachers", (10, 30), 50)


@pytest.mark.background("memory-images", *IMAGES)
def test_quick_memory_benchmark_scans_and_distils_two_task_sizes_in_fresh_drivers():
    out = printed("memory-images", IMAGES)
    assert re.search(r"task: 800 photos ready", out) and re.search(r"task: 1600 photos ready", out)
    memory_figures(out, "images", (800, 1600), 200)


@pytest.mark.background("realistic", *REALISTIC)
def test_quick_realistic_benchmark_prints_every_ratio():
    out = printed("realistic", REALISTIC)
    for n in (1, 2):
        row = re.search(rf"N={n}: bare forward on {n} thread\(s\) ({NUMBER}) s, cold scan with {n} actor\(s\) "
                        rf"({NUMBER}) s \(medians of 1\); ratio ({NUMBER})x \(goal <= 1.2x\)", out)
        assert row, out[-2000:]
        bare, cold, ratio = map(float, row.groups())
        assert ratio == pytest.approx(cold / bare, rel=0.05, abs=0.01)
    end = re.search(rf"end to end: bare forward on 2 threads ({NUMBER}) s, `selkd scan` in a fresh process .* "
                    rf"({NUMBER}) s \(medians of 1\); ratio ({NUMBER})x \(goal <= 1.2x\)", out)
    assert end, out[-2000:]
    assert re.search(rf"rescan with every teacher cached: `selkd scan` again into the same folder {NUMBER} s "
                     rf"\(median of 1; goal <= 5 s\)", out), out[-2000:]
    assert re.search(rf"a bad option answered: `selkd select --epochs 0` exits 2 in {NUMBER} s \(median of 1; "
                     rf"goal < 2 s\)", out), out[-2000:]
    assert re.search(r"2 teachers \(.*\), 30-image probe:", out), out[-2000:]


@pytest.mark.background("demo", *DEMO)
def test_the_readme_demo_command_runs_whole():
    done, out = finished("demo", DEMO)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "core_worker.cc" not in done.stderr, done.stderr[-3000:]
    text = done.stdout
    ranked = re.findall(r"^\s+(\d+)\s+(\S+)\s+\S+\s+scored\s", text, flags=re.M)
    assert [int(rank) for rank, _ in ranked] == list(range(1, 14)), text[:3000]  # 12 trained teachers, 1 ImageNet
    assert "imagenet-efficientnet-lite0" in {name for _, name in ranked}
    students = re.findall(rf"from (top-ranked teacher|bottom-ranked teacher|labels alone)\s+(\S+\s+)?({NUMBER})$",
                          text, flags=re.M)
    assert [kind for kind, *_ in students] == ["top-ranked teacher", "bottom-ranked teacher", "labels alone"], text
    assert all(0.0 < float(accuracy) <= 1.0 for *_, accuracy in students)
    assert students[0][1].strip() == ranked[0][1] and students[1][1].strip() == ranked[-1][1]
    assert re.search(r"^Guard \(validation split, as `selkd select` decides\): kept the ", text, flags=re.M), text
    for path in ("scan/scores.parquet", "scan/report.html", "scan/selection.parquet", "ranking.png", "report.txt"):
        assert (out / path).is_file(), path


@pytest.mark.background("time-to-student", *TIME_TO_STUDENT, after=(("demo", DEMO),))
def test_quick_time_to_a_student_times_select_against_one_distill():
    """`selkd select` and `selkd distill` as a user runs them, each a fresh process with its own Ray into a fresh
    folder, on the demo's zoo and task; the script's figures are present and add up."""
    _, demo = finished("demo", DEMO)  # run alone: the demo's zoo first
    done, out = finished("time-to-student", TIME_TO_STUDENT)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    figures = json.loads((out / "time-to-student.json").read_text())
    row, = figures["rows"]
    assert figures["quick"] is True and (demo / "zoo" / row["teacher"]).is_dir() and row["ratio"] == figures["ratio"]
    assert row["select_s"] > 0 and row["distill_s"] > 0 and row["ratio"] == row["select_s"] / row["distill_s"]
    assert row["scan_s"] > 0 and row["final_s"] > 0 and row["race_s"] == 0  # --quick: no race
    assert row["scan_s"] + row["outputs_s"] + row["race_s"] + row["final_s"] < row["select_s"]
    assert "median of 1 pair(s)" in done.stdout and "goal <= 1.5x" in done.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["distill-0", "select-0"]
