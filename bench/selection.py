"""Selection benchmark: the whole pipeline (scan, race, guard), alone and with a mixture of teachers, against
the best single teacher's student and label-only, on the ranking benchmark's held-out targets.

For every held-out (target, seed) of `bench/ranking.py` (its zoo, targets, splits and ground-truth students,
cached: run it first, or this trains them): the students of the scan's top-1 teacher (ground truth), of its
top-2 and top-3 teachers as one mixture (weighed by their standardised scan scores, `mixture.score_weights`),
of the oracle single teacher (the best ground-truth student) and of labels alone, same student, epochs and
seed; then what `select_student` keeps under its defaults and with `--mixture 3`. Reported: mean test accuracy
with 95% bootstrap intervals over targets (the independent unit: seeds share a target's images and teachers),
how often the race picked the mixture, each pipeline's regret to the oracle (negative: it beat the best single
teacher) and its training FLOPs against one distillation of the final student.

    .venv/bin/python bench/selection.py            # the ranking benchmark's held-out targets, 2 seeds, 20 epochs
    .venv/bin/python bench/selection.py --quick    # its quick zoo, one held-out target, 1 seed, 1 epoch, shortlist 2
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
from common import machine, student_accuracy_here  # noqa: E402
from ranking import (PROBE_PER_CLASS, SPLITS, Plan, budget_key, build_zoo, full_plan, ground_truth,  # noqa: E402
                     quick_plan)
from sources import SELECTION_TARGETS  # noqa: E402

from selkd_ray.config import ScanConfig
from selkd_ray.distributed.fan_out import fan_out
from selkd_ray.distributed.runtime import connect
from selkd_ray.io.atomic import read_table, write_table
from selkd_ray.mixture import members_of, score_weights
from selkd_ray.plans.select import epoch_costs, select_student
from selkd_ray.records import content_hash
from selkd_ray.selection import LABELS_ONLY, SelectConfig
from selkd_ray.training.student_data import student_images, teacher_spec

COLUMNS = ("labels_only", "top1", "mix2", "mix3", "oracle", "select", "select_mixture")
MIXTURE = 3  # the mixture `select --mixture` races: the shortlist's top three


def mixture_students(units: list[dict], plan: Plan, zoo_dir: Path, tasks: dict, out: Path, say) -> None:
    """Each unit's top-2 and top-3 mixture students (test accuracy), trained as Ray Data tasks with the plain
    loop, cached by (members, weights, task, budget, seed) like the ground truth."""
    calls, where = [], []
    for unit in units:
        for k in (2, 3):
            members, weights = unit[f"mix{k}_members"], unit[f"mix{k}_weights"]
            key = content_hash(*members, *map(str, weights), tasks[unit["target"]].content_hash,
                               budget_key(plan.student), unit["seed"])[:24]
            path = out / "mixtures" / f"{key}.parquet"
            if path.is_file():
                unit[f"mix{k}"] = read_table(path).column("test_accuracy")[0].as_py()
                continue
            calls.append(("@" + unit["target"], [str(zoo_dir / m) for m in members],
                          replace(plan.student, seed=unit["seed"]), None, weights))
            where.append((unit, k, path))
    say(f"mixture students: {len(calls)} to train")
    for index, result in fan_out(student_accuracy_here, calls, shared=tasks):
        unit, k, path = where[index]
        unit[f"mix{k}"] = result["test_accuracy"]
        write_table(pa.Table.from_pylist([{"test_accuracy": result["test_accuracy"]}]), path)
        say(f"{unit['target']} seed {unit['seed']} top-{k} mixture: {result['test_accuracy']:.3f}")


def run(out: Path, plan: Plan, shortlist: int, race_epochs: int, say=print, held_out: bool = True,
        runners=None) -> dict:
    """`runners`: a running RunnerPool for the selections' scans (else each starts its own as needed)."""
    out = Path(out).resolve()
    started = time.perf_counter()
    connect()
    zoo_dir = out / "zoo"
    build_zoo(plan, zoo_dir, say)
    tasks = {t.name: t.task(SPLITS) for t in plan.targets if not held_out or t.name not in SELECTION_TARGETS}
    truth = ground_truth(replace(plan, targets=tuple(t for t in plan.targets if t.name in tasks)), zoo_dir, tasks,
                         out, say)
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"] for r in truth}
    units = []
    for target, task in tasks.items():
        for seed in plan.seeds:
            base = SelectConfig(ScanConfig(probe_per_class=PROBE_PER_CLASS, seed=seed), replace(plan.student, seed=seed),
                                shortlist=shortlist, race_epochs=race_epochs)
            # one output for both: the second reads the first's scan, and its final students where the race
            # picks the same winner (the same runs); its own race (a mixture in it) and selection.parquet
            plain = select_student(zoo_dir, task, out / "select" / f"{target}-{seed}", base, runners=runners)
            mixed = select_student(zoo_dir, task, out / "select" / f"{target}-{seed}",
                                   replace(base, mixture=min(MIXTURE, shortlist)), runners=runners)
            ranked = plain.scan.ranked
            scores = {row.teacher_id: row.score for row in ranked}
            teachers = [t.teacher_id for t in plan.teachers]
            distilled_epoch, _ = epoch_costs(task, base)
            one = plan.student.epochs * distilled_epoch
            unit = {"target": target, "seed": seed, "labels_only": accuracy[(target, seed, "labels-only")],
                    "top1": accuracy[(target, seed, ranked[0].teacher_id)],
                    "oracle": max(accuracy[(target, seed, t)] for t in teachers),
                    "select": plain.test_accuracy, "select_mixture": mixed.test_accuracy,
                    "picked_mixture": bool(members_of(mixed.teacher)), "kept_mixture": mixed.kept,
                    "cost_select": training_flops(plain, zoo_dir, task) / one,
                    "cost_select_mixture": training_flops(mixed, zoo_dir, task) / one}
            for k in (2, 3):
                members = [row.teacher_id for row in ranked[:k]]
                unit[f"mix{k}_members"] = members
                unit[f"mix{k}_weights"] = list(score_weights([scores[m] for m in members],
                                                             [row.score for row in ranked], 1.0))
            units.append(unit)
            say(f"{target} seed {seed}: select {plain.test_accuracy:.3f} ({plain.kept}, {plain.teacher}); with a "
                f"mixture {mixed.test_accuracy:.3f} ({mixed.kept}, {mixed.teacher}); oracle {unit['oracle']:.3f}")
    mixture_students(units, plan, zoo_dir, tasks, out, say)
    write_table(pa.Table.from_pylist([{k: v for k, v in u.items() if not k.endswith(("members", "weights"))}
                                      for u in units]), out / "selection_units.parquet")
    text = report(units, plan, shortlist, race_epochs, time.perf_counter() - started, min(MIXTURE, shortlist))
    (out / "selection.txt").write_text(text + "\n")
    say(text)
    return {"units": units, "text": text}


def training_flops(result, zoo_dir: Path, task) -> float:
    """What a selection spends after its scan: its shortlisted teachers' outputs on the student's images
    (counted whether or not a cache held them, so a rerun and the second selection of an output count them
    too), its race and its final students with their evaluation."""
    teachers = {t.candidate for t in result.trials if t.candidate != LABELS_ONLY and not members_of(t.candidate)}
    teachers = teachers or ({result.teacher} - {LABELS_ONLY})
    outputs = sum(teacher_spec(zoo_dir / t).flops_per_sample for t in teachers) * len(student_images(task))
    return outputs + sum(s.flops for s in result.stages if s.candidate not in ("scan", "teacher outputs"))


def per_target(units: list[dict], column: str) -> np.ndarray:
    """A column averaged over each target's seeds: one value per target, the independent unit."""
    targets = sorted({u["target"] for u in units})
    return np.array([np.mean([u[column] for u in units if u["target"] == t]) for t in targets])


def interval(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return tuple(float(v) for v in np.percentile(values[draws].mean(1), [2.5, 97.5]))


def report(units: list[dict], plan: Plan, shortlist: int, race_epochs: int, seconds: float, k: int = MIXTURE) -> str:
    names = {"labels_only": "label-only", "top1": "top-1 teacher", "mix2": "top-2 mixture",
             "mix3": "top-3 mixture", "oracle": "oracle single teacher", "select": "select (defaults)",
             "select_mixture": f"select --mixture {k}"}
    lines = [f"Selection benchmark, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(plan.teachers)} teachers, targets {', '.join(sorted({u['target'] for u in units}))}, seeds "
             f"{list(plan.seeds)}, students {plan.student.student} for {plan.student.epochs} epochs; pipeline: "
             f"default scorers ({ScanConfig().scorers[0]} ranks), probe {PROBE_PER_CLASS} per class, shortlist {shortlist}, race "
             f"{race_epochs} epochs (ASHA), guard z={SelectConfig().guard_z:g}; 95% bootstrap over targets", "",
             f"{'student':<24} {'test accuracy':>14} {'95% interval':>18}"]
    for column in COLUMNS:
        values = per_target(units, column)
        low, high = interval(values)
        lines.append(f"{names[column]:<24} {values.mean():>14.3f}   [{low:.3f}, {high:.3f}]")
    lines.append("")
    for column in ("select", "select_mixture"):
        regret = per_target(units, "oracle") - per_target(units, column)
        worst = min(u[column] - u["labels_only"] for u in units)
        low, high = interval(regret)
        lines.append(f"{names[column]}: regret to the oracle {regret.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"(negative: beat the best single teacher); worst unit against label-only {worst:+.3f}; "
                     f"training cost {np.mean([u['cost_' + column] for u in units]):.2f}x one distillation")
    picked = sum(u["picked_mixture"] for u in units)
    ratio = np.mean([u["cost_select_mixture"] for u in units]) / np.mean([u["cost_select"] for u in units])
    lines += [f"the race picked the mixture in {picked} of {len(units)} units; select --mixture {k} cost "
              f"{ratio:.2f}x select's (training FLOPs; goal <= 1.2x)", f"wall time {seconds:.0f} s"]
    return "\n".join(lines)


def main(quick: bool = typer.Option(False, help="the ranking benchmark's quick zoo, one held-out target, 1 epoch"),
         out: Path = typer.Option(Path("bench-out/ranking"), help="output folder: the ranking benchmark's, to reuse "
                                                                  "its zoo and ground-truth students"),
         seeds: int = typer.Option(2, help="probe and student seeds per target"),
         epochs: int = typer.Option(20, help="student epochs (ground truth, mixtures, the pipelines' finals)"),
         shortlist: int = typer.Option(3), race_epochs: int = typer.Option(5)) -> None:
    plan = quick_plan() if quick else full_plan(seeds, epochs)
    run(out, plan, 2 if quick else shortlist, 1 if quick else race_epochs)


if __name__ == "__main__":
    typer.run(main)
