"""Selection benchmark: the whole pipeline (scan, race, guard), alone and with a mixture of teachers, against
the best single teacher's student and label-only, on the ranking benchmark's held-out targets.

For every held-out (target, seed) of `bench/ranking.py` (its zoo, targets, splits and ground-truth students,
cached: run it first, or this trains them): the students of the scan's top-1 teacher (ground truth), of its
top-2 and top-3 teachers as one mixture (weighed by their standardised scan scores, `mixture.score_weights`),
of the oracle single teacher (the best ground-truth student) and of labels alone, same student, epochs and
seed, and the top-3 with per-image weights (`--per-image-weights`); then what `select_student` keeps under its
defaults, with `--mixture 3` and with `--mixture 3 --per-image-weights`. Reported: mean test accuracy
with 95% bootstrap intervals over targets (the independent unit: seeds share a target's images and teachers),
how often the race picked the mixture, each pipeline's regret to the oracle (negative: it beat the best single
teacher) and its training FLOPs against one distillation of the final student.

    .venv/bin/python bench/selection.py            # the ranking benchmark's held-out targets, 2 seeds, 20 epochs
    .venv/bin/python bench/selection.py --quick    # its quick zoo, one held-out target, 1 seed, 1 epoch, shortlist 2
"""
from __future__ import annotations

import datetime
import shutil
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

COLUMNS = ("labels_only", "top1", "mix2", "mix3", "mix3i", "oracle", "select", "select_mixture", "select_per_image")
MIXTURES = (("mix2", 2, False), ("mix3", 3, False), ("mix3i", 3, True))  # column, members, per-image weights
MIXTURE = 3  # the mixture `select --mixture` races: the shortlist's top three


def mixture_students(units: list[dict], plan: Plan, zoo_dir: Path, tasks: dict, out: Path, say) -> None:
    """Each unit's top-2 and top-3 mixture students, and the top-3 with per-image weights (test accuracy),
    trained as Ray Data tasks with the plain loop, cached by (members, weights, task, budget, seed) like the
    ground truth."""
    calls, where = [], []
    for unit in units:
        for column, k, per_image in MIXTURES:
            members, weights = unit[f"mix{k}_members"], unit[f"mix{k}_weights"]
            key = content_hash(*members, *map(str, weights), tasks[unit["target"]].content_hash,
                               budget_key(plan.student), unit["seed"], *(["per-image"] if per_image else []))[:24]
            path = out / "mixtures" / f"{key}.parquet"
            if path.is_file():
                unit[column] = read_table(path).column("test_accuracy")[0].as_py()
                continue
            calls.append(("@" + unit["target"], [str(zoo_dir / m) for m in members],
                          replace(plan.student, seed=unit["seed"], per_image_weights=per_image), None, weights))
            where.append((unit, column, path))
    say(f"mixture students: {len(calls)} to train")
    for index, result in fan_out(student_accuracy_here, calls, shared=tasks):
        unit, column, path = where[index]
        unit[column] = result["test_accuracy"]
        write_table(pa.Table.from_pylist([{"test_accuracy": result["test_accuracy"]}]), path)
        say(f"{unit['target']} seed {unit['seed']} {column}: {result['test_accuracy']:.3f}")


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
            per_image = select_student(zoo_dir, task, out / "select" / f"{target}-{seed}",
                                       replace(base, mixture=min(MIXTURE, shortlist),
                                               distill=replace(base.distill, per_image_weights=True)),
                                       runners=runners)
            ranked = plain.scan.ranked
            scores = {row.teacher_id: row.score for row in ranked}
            teachers = [t.teacher_id for t in plan.teachers]
            distilled_epoch, _ = epoch_costs(task, base)
            one = plan.student.epochs * distilled_epoch
            unit = {"target": target, "seed": seed, "labels_only": accuracy[(target, seed, "labels-only")],
                    "top1": accuracy[(target, seed, ranked[0].teacher_id)],
                    "oracle": max(accuracy[(target, seed, t)] for t in teachers),
                    "select": plain.test_accuracy, "select_mixture": mixed.test_accuracy,
                    "select_per_image": per_image.test_accuracy,
                    "picked_mixture": bool(members_of(mixed.teacher)), "kept_mixture": mixed.kept,
                    "picked_per_image": bool(members_of(per_image.teacher)), "kept_per_image": per_image.kept,
                    "cost_select": training_flops(plain, zoo_dir, task) / one,
                    "cost_select_mixture": training_flops(mixed, zoo_dir, task) / one,
                    "cost_select_per_image": training_flops(per_image, zoo_dir, task) / one}
            for k in (2, 3):
                members = [row.teacher_id for row in ranked[:k]]
                unit[f"mix{k}_members"] = members
                unit[f"mix{k}_weights"] = list(score_weights([scores[m] for m in members],
                                                             [row.score for row in ranked], 1.0))
            units.append(unit)
            say(f"{target} seed {seed}: select {plain.test_accuracy:.3f} ({plain.kept}, {plain.teacher}); with a "
                f"mixture {mixed.test_accuracy:.3f} ({mixed.kept}, {mixed.teacher}); per-image weights "
                f"{per_image.test_accuracy:.3f} ({per_image.kept}, {per_image.teacher}); oracle {unit['oracle']:.3f}")
    mixture_students(units, plan, zoo_dir, tasks, out, say)
    write_table(pa.Table.from_pylist([{k: v for k, v in u.items() if not k.endswith(("members", "weights"))}
                                      for u in units]), out / "selection_units.parquet")
    steps = product_sequence(plan, tasks, zoo_dir, out, accuracy, shortlist, race_epochs, say, runners)
    text = report(units, plan, shortlist, race_epochs, time.perf_counter() - started, min(MIXTURE, shortlist))
    text += "\n\n" + sequence_text(steps)
    (out / "selection.txt").write_text(text + "\n")
    say(text)
    return {"units": units, "text": text, "sequence": steps}


def product_sequence(plan: Plan, tasks: dict, zoo_dir: Path, out: Path, accuracy: dict, shortlist: int,
                     race_epochs: int, say, runners=None) -> list[dict]:
    """Issue 29's product sequence, as a team would run it: real `select_student` runs (scan, race, final stage,
    guard) on the held-out targets, seed by seed, every one with `--scorer learned` and one shared experience
    table that starts empty and that each selection appends its race's outcomes to. A selection ranks with the
    fit on what the earlier ones recorded (never its own task's outcomes: the ranker drops them), the
    cold-start aggregate until three other tasks have outcomes. Per position: what ranked, the race's cost
    (epochs of all trials, FLOPs), and the kept student's regret to the oracle single teacher."""
    experience, steps = out / "sequence" / "experience", []
    shutil.rmtree(experience, ignore_errors=True)  # a rerun starts empty too (its races are read back)
    order = [(target, seed) for seed in plan.seeds for target in tasks]  # seed-major: other tasks come first
    for position, (target, seed) in enumerate(order, 1):
        lines: list[str] = []
        known = experience_tasks(experience)  # what this selection's ranking could learn from (its own task aside)
        config = SelectConfig(ScanConfig(scorers=("learned", *ScanConfig().scorers), probe_per_class=PROBE_PER_CLASS,
                                         seed=seed, experience=str(experience)),
                              replace(plan.student, seed=seed), shortlist=shortlist, race_epochs=race_epochs)
        result = select_student(zoo_dir, tasks[target], out / "sequence" / f"{position:02d}-{target}-{seed}", config,
                                progress=lambda line: lines.append(str(line)), runners=runners)
        race = next((stage for stage in result.stages if stage.candidate == "race"), None)
        oracle = max(accuracy[(target, seed, t.teacher_id)] for t in plan.teachers)
        steps.append({"position": position, "target": target, "seed": seed,
                      "ranked_by": "aggregate" if any("cold-start aggregate" in line for line in lines) else "learned",
                      "other_tasks": len(known - {tasks[target].content_hash}),
                      "top": result.scan.ranked[0].teacher_id, "kept": result.kept, "teacher": result.teacher,
                      "race_epochs": sum(t.epochs for t in result.trials), "race_flops": race.flops if race else 0.0,
                      "test_accuracy": result.test_accuracy, "regret": oracle - result.test_accuracy})
        say(f"sequence {position}: {target} seed {seed} ranked by {steps[-1]['ranked_by']}, top {steps[-1]['top']}, "
            f"kept {result.kept} ({result.teacher}), regret {steps[-1]['regret']:+.3f}")
    write_table(pa.Table.from_pylist(steps), out / "sequence.parquet")
    return steps


def experience_tasks(folder: Path) -> set[str]:
    """The task hashes the experience table holds outcomes of."""
    from selkd_ray.io.experience import read_experience

    return {row.task_hash for row in read_experience(folder)} if folder.is_dir() else set()


def sequence_text(steps: list[dict]) -> str:
    lines = ["the product's sequence: real selections, each with --scorer learned on one experience table that "
             "the earlier ones filled (empty at the start)",
             f"{'#':>2} {'target':<13} {'seed':>4} {'other tasks':>11} {'ranked by':<10} {'top teacher':<14} "
             f"{'kept':<11} {'race epochs':>11} {'race FLOPs':>11} {'regret':>7}"]
    lines += [f"{s['position']:>2} {s['target']:<13} {s['seed']:>4} {s['other_tasks']:>11} {s['ranked_by']:<10} "
              f"{s['top']:<14} "
              f"{s['kept']:<11} {s['race_epochs']:>11} {s['race_flops']:>11.3g} {s['regret']:>+7.3f}" for s in steps]
    learned = [s["regret"] for s in steps if s["ranked_by"] == "learned"]
    cold = [s["regret"] for s in steps if s["ranked_by"] != "learned"]
    lines.append(f"mean regret to the oracle: {np.mean(cold):+.3f} while the aggregate ranked ({len(cold)}), "
                 + (f"{np.mean(learned):+.3f} once learned ranked ({len(learned)})" if learned else
                    "learned never had enough experience to rank"))
    return "\n".join(lines)


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
             "mix3": "top-3 mixture", "mix3i": "top-3, per-image weights", "oracle": "oracle single teacher",
             "select": "select (defaults)", "select_mixture": f"select --mixture {k}",
             "select_per_image": f"select --mixture {k} --per-image-weights"}
    lines = [f"Selection benchmark, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(plan.teachers)} teachers, targets {', '.join(sorted({u['target'] for u in units}))}, seeds "
             f"{list(plan.seeds)}, students {plan.student.student} for {plan.student.epochs} epochs; pipeline: "
             f"default scorers ({ScanConfig().scorers[0]} ranks), probe {PROBE_PER_CLASS} per class, shortlist {shortlist}, race "
             f"{race_epochs} epochs (ASHA), guard z={SelectConfig().guard_z:g}; 95% bootstrap over targets", "",
             f"{'student':<41} {'test accuracy':>14} {'95% interval':>18}"]
    for column in COLUMNS:
        values = per_target(units, column)
        low, high = interval(values)
        lines.append(f"{names[column]:<41} {values.mean():>14.3f}   [{low:.3f}, {high:.3f}]")
    lines.append("")
    for column in ("select", "select_mixture", "select_per_image"):
        regret = per_target(units, "oracle") - per_target(units, column)
        worst = min(u[column] - u["labels_only"] for u in units)
        low, high = interval(regret)
        lines.append(f"{names[column]}: regret to the oracle {regret.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"(negative: beat the best single teacher); worst unit against label-only {worst:+.3f}; "
                     f"training cost {np.mean([u['cost_' + column] for u in units]):.2f}x one distillation")
    for column, picked in (("select_mixture", "picked_mixture"), ("select_per_image", "picked_per_image")):
        ratio = np.mean([u["cost_" + column] for u in units]) / np.mean([u["cost_select"] for u in units])
        lines.append(f"{names[column]}: the race picked the mixture in {sum(u[picked] for u in units)} of "
                     f"{len(units)} units; it cost {ratio:.2f}x select's (training FLOPs; goal <= 1.2x)")
    lines.append(f"wall time {seconds:.0f} s")
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
