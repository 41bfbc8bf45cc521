"""Selection benchmark: does the full pipeline (scan + race + guard) return a student close to the best
teacher's, and never worse than label-only?

For every (target, seed) unit: ground-truth students from every teacher and from labels alone (the ranking
benchmark's, cached), then `select_student` under its defaults. Compared with (a) the oracle (best teacher's
student), (b) the top-scored teacher's student without race or guard, (c) label-only: regret to the oracle,
the worst case against label-only, and the pipeline's training FLOPs against one distillation's.

    .venv/bin/python bench/selection.py            # 12 demo teachers, 3 targets, 1 seed
    .venv/bin/python bench/selection.py --quick    # 4 teachers, 1 target, 2 epochs: checks the script
"""
from __future__ import annotations

import datetime
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from ranking import SPLITS, TARGETS, Plan, build_zoo, ground_truth, quick_plan  # noqa: E402

from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.demo.data import DIGIT_NAMES, target_task
from selkd_ray.demo.zoo import RECIPES
from selkd_ray.distributed.runtime import connect
from selkd_ray.io.atomic import write_table
from selkd_ray.api import DistillResult
from selkd_ray.plans.select import epoch_costs, select_student
from selkd_ray.plans.stages import validation_correct
from selkd_ray.selection import LABELS_ONLY, SelectConfig, guard


def plan(seeds: int, epochs: int) -> Plan:
    return Plan(RECIPES, TARGETS, tuple(range(seeds)), 4, DistillConfig(epochs=epochs))


def run(out: Path, bench: Plan, shortlist: int, race_epochs: int, say=print) -> str:
    out = Path(out).resolve()
    started = time.perf_counter()
    connect()
    zoo_dir = out / "zoo"
    build_zoo(bench, zoo_dir, say)
    tasks = {"-".join(DIGIT_NAMES[d] for d in digits): target_task(0, digits, SPLITS) for digits in bench.targets}
    truth = ground_truth(bench, zoo_dir, tasks, out, say)
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"] for r in truth}
    rows = []
    for target, task in tasks.items():
        for seed in bench.seeds:
            config = SelectConfig(ScanConfig(scorers=("leep",), probe_per_class=SPLITS["train"]),
                                  replace(bench.student, seed=seed), shortlist=shortlist, race_epochs=race_epochs)
            result = select_student(zoo_dir, task, out / "select" / f"{target}-{seed}", config, progress=say)
            teachers = {r["teacher_id"] for r in truth if r["target"] == target and r["seed"] == seed} - {"labels-only"}
            oracle = max(accuracy[(target, seed, t)] for t in teachers)
            top = result.scan.ranked[0].teacher_id
            distilled_epoch, _ = epoch_costs(task, config)
            training = sum(s.flops for s in result.stages if s.candidate != "scan")
            rows.append({"target": target, "seed": seed, **guard_sweep(task, result),
                         "pipeline": result.test_accuracy, "kept": result.kept,
                         "winner": result.teacher, "oracle": oracle, "top_scored": accuracy[(target, seed, top)],
                         "top_teacher": top, "labels_only": accuracy[(target, seed, "labels-only")],
                         "cost_ratio": training / (bench.student.epochs * distilled_epoch)})
            say(f"{target} seed {seed}: pipeline {result.test_accuracy:.3f} ({result.kept}, {result.teacher}); "
                f"oracle {oracle:.3f}, top-scored {rows[-1]['top_scored']:.3f}, labels only {rows[-1]['labels_only']:.3f}")
    write_table(pa.Table.from_pylist(rows), out / "select_units.parquet")
    text = report(rows, bench, shortlist, race_epochs, time.perf_counter() - started)
    (out / "select.txt").write_text(text + "\n")
    say(text)
    return text


GUARD_Z = (0.0, 0.5, 1.0, 2.0)


def guard_sweep(task, result) -> dict:
    """The test accuracy the pipeline would return under other guard margins: the guard needs only the two
    final students' validation results, so every z is decided on the same students."""
    stages = {s.candidate: s for s in result.stages}
    if result.teacher == LABELS_ONLY:  # the label-only reference won the race: no guard to sweep
        return {f"z{z:g}": result.test_accuracy for z in GUARD_Z}
    students = Path(result.student_dir).parent
    labels = DistillResult(students / "final-labels-only", None, stages["final labels-only"].test_accuracy,
                           0.0, [], "")
    distilled = DistillResult(students / f"final-{result.teacher}", None,
                              stages[f"final {result.teacher}"].test_accuracy, 0.0, [], result.teacher)
    right = validation_correct(task, distilled), validation_correct(task, labels)
    return {f"z{z:g}": distilled.test_accuracy if guard(*right, z, result.teacher).keep_distilled
            else labels.test_accuracy for z in GUARD_Z}


def report(rows: list[dict], bench: Plan, shortlist: int, race_epochs: int, seconds: float) -> str:
    header = f"{'target':<22} {'seed':>4} {'pipeline':>9} {'kept':<12} {'oracle':>7} {'top-scored':>10} {'labels':>7} {'cost':>6}"
    lines = [f"Selection benchmark, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(bench.recipes)} teachers, {SPLITS['train']} labels per class, students {bench.student.student} for "
             f"{bench.student.epochs} epochs; pipeline: leep scan, shortlist {shortlist}, race {race_epochs} epochs "
             f"(ASHA), guard z={SelectConfig().guard_z:g}", header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['target']:<22} {r['seed']:>4} {r['pipeline']:>9.3f} {r['kept']:<12} {r['oracle']:>7.3f} "
                     f"{r['top_scored']:>10.3f} {r['labels_only']:>7.3f} {r['cost_ratio']:>5.2f}x")
    regret = np.array([r["oracle"] - r["pipeline"] for r in rows])
    versus_labels = np.array([r["pipeline"] - r["labels_only"] for r in rows])
    top_regret = np.array([r["oracle"] - r["top_scored"] for r in rows])
    lines += [f"regret to the oracle: pipeline {regret.mean():+.3f} (max {regret.max():+.3f}); top-scored teacher "
              f"without race or guard {top_regret.mean():+.3f} (max {top_regret.max():+.3f})",
              f"pipeline against label-only: mean {versus_labels.mean():+.3f}, worst {versus_labels.min():+.3f}",
              "guard margin z (distilled kept only if it beats label-only on validation by z standard errors): " +
              "; ".join(f"z={z:g}: regret {np.mean([r['oracle'] - r[f'z{z:g}'] for r in rows]):+.3f}, worst against "
                        f"label-only {min(r[f'z{z:g}'] - r['labels_only'] for r in rows):+.3f}" for z in GUARD_Z),
              f"training cost against one distillation: mean {np.mean([r['cost_ratio'] for r in rows]):.2f}x, "
              f"max {max(r['cost_ratio'] for r in rows):.2f}x; wall time {seconds:.0f} s"]
    return "\n".join(lines)


def main(quick: bool = typer.Option(False, help="4 teachers, 1 target, 1 seed, 2 epochs: checks the script"),
         out: Path = typer.Option(Path("bench-out/select"), help="output folder (zoo, caches, tables)"),
         seeds: int = typer.Option(1, help="student seeds per target"),
         epochs: int = typer.Option(15, help="student epochs (ground truth and final distillation)"),
         shortlist: int = typer.Option(3), race_epochs: int = typer.Option(5)) -> None:
    run(out, quick_plan() if quick else plan(seeds, epochs), 2 if quick else shortlist, 2 if quick else race_epochs)


if __name__ == "__main__":
    typer.run(main)
