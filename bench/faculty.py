"""Faculty benchmark (issue 42): targets no single teacher covers, from a zoo of specialists
(`sources.SPECIALIST_TEACHERS`: digit blocks, even and odd digits, one trained badly, one of random labels),
and whether several teachers at once beat every single one there.

For every (faculty target, seed) (`sources.FACULTY_TARGETS`; the held-out four, or with `--selection-half` the
two the defaults are chosen on), N training and N validation labels per class, of the rest of the
target's pool half unlabelled (`faculty_splits`, at most 100 per class) and half in the test split: the students of labels alone and of every teacher (the oracle: the best of
them), the scan's top-2 and top-3 mixtures, the mixture the coverage rule chooses (`coverage.covering_members`,
with and without per-image weights), each `distill --refit` with the same student, epochs and seed; and what
`select_student` keeps with its defaults (the coverage rule on) and with `--no-cover` (no mixture: today's
path). Reported per target (the independent unit; seeds share a target's images): mean test accuracy with 95%
bootstrap intervals, regret to the oracle single teacher (negative: beat it), in how many units each beat the
oracle, worst unit against label-only, and training FLOPs against one distillation.

    .venv/bin/python bench/faculty.py --labels 5 --labels 20   # 4 held-out targets x 2 seeds, 20 epochs
    .venv/bin/python bench/faculty.py --quick    # mnist's specialists only, one target, 1 seed, 1 epoch
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
from ranking import PROBE_PER_CLASS, Plan  # noqa: E402
from selection import (interval, mixture_students, per_target, reference_students,  # noqa: E402
                       training_flops)
from sources import (FACULTY_SELECTION_TARGETS, FACULTY_TARGETS, SPECIALIST_TEACHERS, BenchTarget,  # noqa: E402
                     source_images, source_pools)

from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.io.atomic import write_table
from selkd_ray.mixture import score_weights
from selkd_ray.plans.select import epoch_costs, select_student
from selkd_ray.selection import SelectConfig

MIXTURES = (("mix2", "mix2", False), ("mix3", "mix3", False), ("cover", "cover", False),
            ("cover_i", "cover", True))  # column, members, per-image weights
NAMES = {"labels_only": "label-only", "top1": "top-1 teacher", "oracle": "oracle single teacher",
         "mix2": "top-2 mixture", "mix3": "top-3 mixture", "cover": "covering mixture",
         "cover_i": "covering mixture, per-image weights", "select": "select (defaults: --cover)",
         "select_no_cover": "select --no-cover"}
QUICK_TEACHERS = ("mnist-0123", "mnist-456", "mnist-789", "mnist-odd")
QUICK_UNLABELLED = 10  # per class: the quick run's students train on few more images than its labels
QUICK_TARGET = "mnist-2479"  # held out; no quick teacher knows all four of its classes


def full_plan(seeds: int = 2, epochs: int = 20) -> Plan:
    return Plan(SPECIALIST_TEACHERS, FACULTY_TARGETS, tuple(range(seeds)), DistillConfig(epochs=epochs))


def quick_plan() -> Plan:
    return Plan(tuple(t for t in SPECIALIST_TEACHERS if t.teacher_id in QUICK_TEACHERS),
                tuple(t for t in FACULTY_TARGETS if t.name == QUICK_TARGET), (0,), DistillConfig(epochs=1),
                bootstrap=200)


UNLABELLED = 100  # per class at most: half of what the labels leave of a digit's pool, the other half tested


def faculty_splits(target: BenchTarget, labels: int, unlabelled: int = UNLABELLED) -> dict[str, int]:
    """Per class: `labels` training and `labels` validation images; of the rest of the target's pool half is
    unlabelled (at most `unlabelled`) and the other half tested. Amalgamation is learning from teachers on the
    target's unlabelled images: a specialist can only label the classes it knows, so it is where several
    teachers at once should pay (without unlabelled images the teachers only soften the labels' own images)."""
    images, digits = source_images(target.source)[1], source_pools(target.source)[1]
    pool = min(int(np.sum(images[digits] == digit)) for digit in target.digits)
    rest = max(pool - 2 * labels, 0)
    return {"train": labels, "val": labels, "test": rest - min(unlabelled, rest // 2)}


def run(out: Path, plan: Plan, shortlist: int, race_epochs: int, labels: int = 20, held_out: bool = True,
        say=print, unlabelled: int = UNLABELLED) -> dict:
    out = Path(out).resolve()
    started = time.perf_counter()
    zoo_dir, tasks, references, accuracy = reference_students(out, plan, labels, FACULTY_SELECTION_TARGETS,
                                                              held_out, say,
                                                              lambda target, n: faculty_splits(target, n, unlabelled))
    half = "" if held_out else "selection-half-"
    units = []
    for seed in plan.seeds:
        for target, task in tasks.items():
            base = SelectConfig(ScanConfig(probe_per_class=min(PROBE_PER_CLASS, labels), seed=seed),
                                replace(plan.student, seed=seed), shortlist=shortlist, race_epochs=race_epochs)
            where = out / "select" / f"{half}labels-{labels}-unlabelled" / f"{target}-{seed}"  # faculty_splits
            chosen = select_student(zoo_dir, task, where, base)
            today = select_student(zoo_dir, task, where, replace(base, cover=False))
            ranked = chosen.scan.ranked
            one = plan.student.epochs * epoch_costs(task, base)[0]
            scores, every = {r.teacher_id: r.score for r in ranked}, [r.score for r in ranked]
            unit = {"target": target, "seed": seed, "labels_only": accuracy[(target, seed, "labels-only")],
                    "top1": accuracy[(target, seed, ranked[0].teacher_id)], "top1_teacher": ranked[0].teacher_id,
                    "oracle": max(accuracy[(target, seed, t.teacher_id)] for t in plan.teachers),
                    "oracle_teacher": max(plan.teachers, key=lambda t: accuracy[(target, seed, t.teacher_id)]).teacher_id,
                    "select": chosen.test_accuracy, "select_no_cover": today.test_accuracy, "kept": chosen.kept,
                    "teacher": chosen.teacher, "kept_no_cover": today.kept, "teacher_no_cover": today.teacher,
                    "cover_members": list(chosen.mixture), "cover_weights": list(chosen.mixture_weights),
                    "cost_select": training_flops(chosen, zoo_dir, task) / one,
                    "cost_select_no_cover": training_flops(today, zoo_dir, task) / one}
            for k in (2, 3):
                members = [r.teacher_id for r in ranked[:k]]
                unit[f"mix{k}_members"] = members
                unit[f"mix{k}_weights"] = list(score_weights([scores[m] for m in members], every, 1.0))
            units.append(unit)
            say(f"{target} seed {seed}: oracle {unit['oracle']:.3f} ({unit['oracle_teacher']}), top-1 "
                f"{unit['top1']:.3f} ({unit['top1_teacher']}), label-only {unit['labels_only']:.3f}; select "
                f"{chosen.test_accuracy:.3f} ({chosen.kept}, {chosen.teacher}); --no-cover {today.test_accuracy:.3f}")
    mixture_students(units, references, zoo_dir, tasks, out, say, MIXTURES)
    for unit in units:  # a unit the rule raced no mixture in: its covering student is the top teacher's
        if not unit["cover_members"]:
            unit["cover"] = unit["cover_i"] = unit["top1"]
    name = f"faculty_units_{'selection_half_' if not held_out else ''}labels_{labels}"
    write_table(pa.Table.from_pylist([{k: (", ".join(v) if k.endswith("members") else v) for k, v in u.items()
                                       if not k.endswith("weights")} for u in units]), out / f"{name}.parquet")
    text = report(units, plan, shortlist, race_epochs, labels, held_out, time.perf_counter() - started, unlabelled)
    (out / f"{name}.txt").write_text(text + "\n")
    say(text)
    return {"units": units, "text": text}


def report(units: list[dict], plan: Plan, shortlist: int, race_epochs: int, labels: int, held_out: bool,
           seconds: float, unlabelled: int = UNLABELLED) -> str:
    targets = sorted({u["target"] for u in units})
    lines = [f"Faculty benchmark, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(plan.teachers)} specialist teachers, {len(units)} units ({'held-out' if held_out else 'selection-half'}"
             f" targets {', '.join(targets)} x seeds {list(plan.seeds)}); {labels} training + {labels} validation "
             f"labels per class, of the rest of the target's pool half unlabelled (at most {unlabelled} per class) and "
             f"half tested; students {plan.student.student}, "
             f"{plan.student.epochs} epochs, every reference distill --refit; select: shortlist {shortlist}, race "
             f"{race_epochs} epochs; 95% bootstrap over targets", "",
             f"{'student':<38} {'test accuracy':>14} {'95% interval':>18} {'beats oracle':>13}"]
    for column in NAMES:
        values = per_target(units, column)
        low, high = interval(values)
        beats = sum(u[column] > u["oracle"] + 1e-9 for u in units)
        lines.append(f"{NAMES[column]:<38} {values.mean():>14.3f}   [{low:.3f}, {high:.3f}] {beats:>8}/{len(units)}")
    lines.append("")
    for column in ("cover", "cover_i", "select", "select_no_cover"):
        regret = per_target(units, "oracle") - per_target(units, column)
        low, high = interval(regret)
        worst = min(u[column] - u["labels_only"] for u in units)
        cost = f"; training cost {np.mean([u['cost_' + column] for u in units]):.2f}x one distillation" \
            if "cost_" + column in units[0] else ""
        lines.append(f"{NAMES[column]}: regret to the oracle {regret.mean():+.3f} [{low:+.3f}, {high:+.3f}] (goal <= "
                     f"-0.020 for select), worst unit against label-only {worst:+.3f}{cost}")
    raced = sum(bool(u["cover_members"]) for u in units)
    won = sum(u["teacher"].startswith("mixture:") for u in units)
    ratio = np.mean([u["cost_select"] for u in units]) / np.mean([u["cost_select_no_cover"] for u in units])
    lines.append(f"the coverage rule raced a mixture in {raced} of {len(units)} units, the race picked it in {won}; "
                 f"select cost {ratio:.2f}x select --no-cover (training FLOPs; goal <= 1.2x)")
    lines.append(f"wall time {seconds:.0f} s")
    return "\n".join(lines)


def main(quick: bool = typer.Option(False, help="mnist's four specialists, one held-out target, 1 seed, 1 epoch"),
         out: Path = typer.Option(Path("bench-out/faculty"), help="output folder (zoo, references, selections)"),
         seeds: int = typer.Option(2), epochs: int = typer.Option(20),
         labels: list[int] = typer.Option([20], help="training (and as many validation) labels per class; repeat"),
         selection_half: bool = typer.Option(False, help="the two targets the defaults are chosen on"),
         shortlist: int = typer.Option(3), race_epochs: int = typer.Option(5)) -> None:
    plan = quick_plan() if quick else full_plan(seeds, epochs)
    for count in labels:
        run(out, plan, 3 if quick else shortlist, 1 if quick else race_epochs, count, not selection_half,
            unlabelled=QUICK_UNLABELLED if quick else UNLABELLED)


if __name__ == "__main__":
    typer.run(main)
