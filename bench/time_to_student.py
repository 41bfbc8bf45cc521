"""Time to a student: `selkd select` against one `selkd distill` of the teacher it ends with, as the user waits.

Both run as the user runs them: the CLI in a fresh process each (Python's start, the imports, Ray's start or
join, everything to the last file written), into a fresh output folder (no cache shared between them or with
an earlier pair), on the demo's zoo and task (`selkd demo` builds them), defaults for both. The ratio is the
two commands' wall times; the selection's own stage times (scan, teachers' outputs, race, final stage) come
from its `--json`. Pairs alternate which command runs first.

    .venv/bin/python bench/time_to_student.py --zoo /tmp/demo-out/zoo --task /tmp/demo-out/task.parquet
    .venv/bin/python bench/time_to_student.py --quick --zoo Z --task T   # 1 epoch, no race: checks the script
"""
from __future__ import annotations

import datetime
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

QUICK_OPTIONS = ("--epochs", "1")
QUICK_SELECT = ("--no-race",)


def timed(arguments: list[str]) -> tuple[float, dict]:
    """(wall seconds, the --json document) of one CLI command in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "selkd_cli.main", *arguments, "--json"], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments[:1])} failed: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def pair(zoo: Path, task: Path, out: Path, index: int, quick: bool, known: str | None, say) -> dict:
    """One selection and one distillation of the teacher the selection ends with (its race's winner; the scan's
    top teacher where label-only won), each into a fresh folder. With `known` (an earlier pair's teacher) the
    distillation runs first."""
    options = list(QUICK_OPTIONS if quick else ())
    for folder in (out / f"select-{index}", out / f"distill-{index}"):
        shutil.rmtree(folder, ignore_errors=True)
    select = ["select", "--zoo", str(zoo), "--task", str(task), "--out", str(out / f"select-{index}"), *options,
              *(QUICK_SELECT if quick else ())]

    def distill(teacher: str) -> list[str]:
        return ["distill", "--teacher", str(zoo / teacher), "--task", str(task), "--out",
                str(out / f"distill-{index}"), *options]

    if known is None:
        select_s, selected = timed(select)
        teacher = top_teacher(out / f"select-{index}", selected)
        distill_s, _ = timed(distill(teacher))
    else:
        teacher = known
        distill_s, _ = timed(distill(teacher))
        select_s, selected = timed(select)
    stages = {s["candidate"]: s["seconds"] for s in selected["stages"]}
    row = {"pair": index, "select_s": select_s, "distill_s": distill_s, "ratio": select_s / distill_s,
           "teacher": teacher, "kept": selected["kept"], "scan_s": stages.get("scan", 0.0),
           "outputs_s": stages.get("teacher outputs", 0.0), "race_s": stages.get("race", 0.0),
           "final_s": max((v for k, v in stages.items() if k.startswith("final ")), default=0.0)}
    say(f"pair {index}: select {select_s:.1f} s (scan {row['scan_s']:.1f}, teachers' outputs {row['outputs_s']:.1f}, "
        f"race {row['race_s']:.1f}, final stage {row['final_s']:.1f}) against distill of {teacher} "
        f"{distill_s:.1f} s = {row['ratio']:.2f}x")
    return row


def top_teacher(select_out: Path, selected: dict) -> str:
    """The teacher the selection distilled, else (label-only won) the scan's top teacher."""
    if selected["teacher"] and selected["teacher"] != "labels-only" and not selected["teacher"].startswith("mixture:"):
        return selected["teacher"]
    import pyarrow.parquet as pq

    rows = pq.read_table(select_out / "scores.parquet").to_pylist()
    return min((r for r in rows if r["rank"] is not None), key=lambda r: r["rank"])["teacher_id"]


def run(zoo: Path, task: Path, out: Path, pairs: int, quick: bool, say=print) -> dict:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for index in range(pairs):  # odd pairs distil first, the teacher known from the pair before
        known = rows[-1]["teacher"] if index % 2 else None
        rows.append(pair(Path(zoo).resolve(), Path(task).resolve(), out, index, quick, known, say))
    ratio = statistics.median(r["ratio"] for r in rows)
    text = (f"Time to a student, {datetime.date.today().isoformat()}, on {machine()}: `selkd select` against one "
            f"`selkd distill` of the teacher it ends with, each a fresh process into a fresh folder, "
            f"{'quick settings' if quick else 'defaults'}; median of {pairs} pair(s): {ratio:.2f}x (goal <= 1.5x)")
    say(text)
    figures = {"rows": rows, "ratio": ratio, "text": text, "quick": quick}
    (out / "time-to-student.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(zoo: Path = typer.Option(..., help="a zoo (the demo's: `selkd demo` builds it)"),
         task: Path = typer.Option(..., help="its task (the demo's task.parquet)"),
         out: Path = typer.Option(Path("bench-out/time-to-student"), help="output folder"),
         pairs: int = typer.Option(2, help="select / distill pairs, alternating which runs first"),
         quick: bool = typer.Option(False, help="1 epoch, no race: checks the script")) -> None:
    run(zoo, task, out, pairs, quick)


if __name__ == "__main__":
    typer.run(main)
