"""Selection benchmark (issue 41): what `select` hands back against the references a user could have had, each
trained with the selection's own final recipe, on held-out targets with the power to see a point.

For every held-out (target, seed) (`bench/ranking.py`'s four held-out targets and `sources.MORE_HELD_OUT`'s
four, two seeds: 16 units), with N training and N validation labels per class and every other image of the
target's pool in the test split: the students of labels alone, of the scan's top-1 teacher and of every
teacher (the oracle: the best of them), all `distill --refit` (train + validation labels, the last epoch of a
cosine schedule), same student, epochs and seed; then what `select_student` keeps under its defaults, the same
selections sharing one experience table (the guard's prior), and with `--mixture 3`. Reported: mean test
accuracy with 95% bootstrap intervals over targets (the independent unit: seeds share a target's images and
teachers), each pipeline's regret to the oracle, gain over top-1 (and in how many units it was at or above
it), worst unit against label-only, and its training FLOPs against one distillation. `--extras` (always with
`--quick`): the fixed top-2 / top-3 mixtures' students, `--per-image-weights` and issue 29's product sequence.

    .venv/bin/python bench/selection.py --labels 5 --labels 20   # 16 held-out units, 2 tables, 20 epochs
    .venv/bin/python bench/selection.py --quick    # its quick zoo, one held-out target, 1 seed, 1 epoch, shortlist 2
"""
from __future__ import annotations

import datetime
import math
import shutil
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, student_accuracy_here  # noqa: E402
from ranking import (PROBE_PER_CLASS, SPLITS, Plan, budget_key, build_zoo, full_plan, ground_truth,  # noqa: E402
                     quick_plan)
from sources import MORE_HELD_OUT, SELECTION_TARGETS, TARGETS  # noqa: E402

from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.distributed.fan_out import fan_out
from selkd_ray.distributed.runtime import connect
from selkd_ray.io.atomic import read_table, write_table
from selkd_ray.mixture import members_of, score_weights
from selkd_ray.plans.select import epoch_costs, select_student
from selkd_ray.records import content_hash
from selkd_ray.training.loop import DRAWS_VERSION
from selkd_ray.selection import (LABELS_ONLY, Evidence, Prior, SelectConfig, cross_fitted, decide, race_winner,
                                 validation_folds)
from selkd_ray.training.student_data import student_images, teacher_spec

COLUMNS = ("labels_only", "top1", "oracle", "mix2", "mix3", "mix3i", "select", "select_experience", "select_mixture",
           "select_per_image")
MIXTURES = (("mix2", "mix2", False), ("mix3", "mix3", False), ("mix3i", "mix3", True))  # column, members, per-image
MIXTURE = 3  # the mixture `select --mixture` races: the shortlist's top three


def mixture_students(units: list[dict], plan: Plan, zoo_dir: Path, tasks: dict, out: Path, say,
                     mixtures: tuple = MIXTURES) -> None:
    """Each unit's mixture students (`mixtures`: (column, the unit's `NAME_members` / `NAME_weights`, per-image
    weights); by default the top-2 and top-3, and the top-3 with per-image weights), test accuracy, trained as
    Ray Data tasks with the plain loop, cached by (members, weights, task, budget, seed) like the ground
    truth."""
    calls, where = [], []
    for unit in units:
        for column, name, per_image in mixtures:
            members, weights = unit[f"{name}_members"], unit[f"{name}_weights"]
            if not members:  # no mixture of this kind in this unit: its caller fills the column
                continue
            key = content_hash(*members, *map(str, weights), tasks[unit["target"]].content_hash,
                               budget_key(plan.student), unit["seed"], *(["per-image"] if per_image else []),
                               f"draws-{DRAWS_VERSION}")[:24]
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


def label_splits(labels: int) -> dict[str, int]:
    """Per class: `labels` training and `labels` validation images, every other image of the target's pool in
    the test split (none unlabelled), so a point of accuracy is resolved (issue 41: >= 100 per class where
    the source has them: MNIST's pools hold 250 per digit, scikit-learn's 90)."""
    return {"train": labels, "val": labels, "test": 10 ** 6}


def final_recipe(student: DistillConfig) -> DistillConfig:
    """How a selection trains its final student (`distill --refit`: train + validation labels, the last epoch
    of the cosine schedule, cost matrices fitted on every labelled image); every reference is trained so too,
    so the table measures the decisions, not the extra labels."""
    return replace(student, refit=True, keep="last", patience=None)


def reference_students(out: Path, plan: Plan, labels: int, selection_targets: tuple[str, ...], held_out: bool,
                       say, splits=lambda target, labels: label_splits(labels)) -> tuple[Path, dict, Plan, dict]:
    """Ray up, the zoo built (OUT/zoo), this half's tasks (held out: the targets not in `selection_targets`;
    `splits(target, labels)` their split sizes per class, `label_splits` unless said),
    the references' plan (`final_recipe`) and every reference student's test accuracy by (target, seed,
    teacher id or 'labels-only'), trained or read back from the ground-truth cache."""
    connect()
    zoo_dir = out / "zoo"
    build_zoo(plan, zoo_dir, say)
    tasks = {t.name: t.task(splits(t, labels)) for t in plan.targets
             if (t.name not in selection_targets) == held_out}
    references = replace(plan, student=final_recipe(plan.student),
                         targets=tuple(t for t in plan.targets if t.name in tasks))
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"]
                for r in ground_truth(references, zoo_dir, tasks, out, say)}
    return zoo_dir, tasks, references, accuracy


def run(out: Path, plan: Plan, shortlist: int, race_epochs: int, say=print, held_out: bool = True,
        runners=None, labels: int = 20, extras: bool = True) -> dict:
    """`runners`: a running RunnerPool for the selections' scans (else each starts its own as needed).
    `extras`: also the fixed mixtures' students, `--per-image-weights` and the product's sequence."""
    out = Path(out).resolve()
    started = time.perf_counter()
    zoo_dir, tasks, references, accuracy = reference_students(out, plan, labels, SELECTION_TARGETS, held_out, say)
    half = "" if held_out else "selection-half-"
    selections, experience = out / "select" / f"labels-{labels}", out / "select" / f"{half}labels-{labels}-experience"
    shutil.rmtree(experience, ignore_errors=True)  # the shared table starts empty (a rerun reads its races back)
    units = []
    for seed in plan.seeds:  # seed-major: with a shared experience table, other tasks come first
        for target, task in tasks.items():
            scan_config = ScanConfig(probe_per_class=min(PROBE_PER_CLASS, labels), seed=seed)
            # --no-cover: this table's targets all have a covering teacher, and its figures predate the coverage
            # rule (issue 42's own benchmark, bench/faculty.py, measures it)
            base = SelectConfig(scan_config, replace(plan.student, seed=seed), shortlist=shortlist,
                                race_epochs=race_epochs, cover=False)
            where = selections / f"{target}-{seed}"
            # one output for all: the later ones read the first's scan and race, and its final students where
            # they decide the same (the same runs); each writes its own selection.parquet
            plain = select_student(zoo_dir, task, where, base, runners=runners)
            evidence = decision_row(plain)  # now: the next selection of this output rewrites selection.parquet
            known = select_student(zoo_dir, task, where, replace(base, scan=replace(scan_config,
                                                                                    experience=str(experience))),
                                   runners=runners)
            known_row = decision_row(known)  # before the next selection of this output rewrites the file
            prior = prior_line(known_row)
            mixed = select_student(zoo_dir, task, where, replace(base, mixture=min(MIXTURE, shortlist)),
                                   runners=runners)
            ranked = plain.scan.ranked
            distilled_epoch, _ = epoch_costs(task, base)
            one = plan.student.epochs * distilled_epoch
            unit = {"target": target, "seed": seed, "labels_only": accuracy[(target, seed, "labels-only")],
                    "top1": accuracy[(target, seed, ranked[0].teacher_id)], "top1_teacher": ranked[0].teacher_id,
                    "oracle": max(accuracy[(target, seed, t.teacher_id)] for t in plan.teachers),
                    "select": plain.test_accuracy, "select_experience": known.test_accuracy,
                    "select_mixture": mixed.test_accuracy, "kept": plain.kept, "teacher": plain.teacher,
                    "kept_experience": known.kept, "prior": prior,
                    **{k: evidence.get(k) for k in ("better", "worse", "images", "posterior_mean", "posterior_sd")},
                    **{k: known_row.get(k) for k in ("prior_mean", "prior_sd", "prior_tasks")},
                    "winner_reference": accuracy[(target, seed, plain.teacher)] if plain.teacher != LABELS_ONLY
                    else accuracy[(target, seed, "labels-only")],
                    "picked_mixture": bool(members_of(mixed.teacher)), "kept_mixture": mixed.kept,
                    "cost_select": training_flops(plain, zoo_dir, task) / one,
                    "cost_select_experience": training_flops(known, zoo_dir, task) / one,
                    "cost_select_mixture": training_flops(mixed, zoo_dir, task) / one,
                    "_race": race_record(plain, accuracy, target, seed), "_folds": validation_folds(task)}
            if extras:
                per_image = select_student(zoo_dir, task, where,
                                           replace(base, mixture=min(MIXTURE, shortlist),
                                                   distill=replace(base.distill, per_image_weights=True)),
                                           runners=runners)
                unit.update({"select_per_image": per_image.test_accuracy,
                             "picked_per_image": bool(members_of(per_image.teacher)), "kept_per_image": per_image.kept,
                             "cost_select_per_image": training_flops(per_image, zoo_dir, task) / one})
                scores = {row.teacher_id: row.score for row in ranked}
                for k in (2, 3):
                    members = [row.teacher_id for row in ranked[:k]]
                    unit[f"mix{k}_members"] = members
                    unit[f"mix{k}_weights"] = list(score_weights([scores[m] for m in members],
                                                                 [row.score for row in ranked], 1.0))
            units.append(unit)
            say(f"{target} seed {seed}: top-1 {unit['top1']:.3f} ({unit['top1_teacher']}), oracle "
                f"{unit['oracle']:.3f}, label-only {unit['labels_only']:.3f}; select {plain.test_accuracy:.3f} "
                f"({plain.kept}, {plain.teacher}); with the shared experience {known.test_accuracy:.3f} "
                f"({known.kept}; {unit['prior']}); --mixture {mixed.test_accuracy:.3f} ({mixed.kept}, {mixed.teacher})")
    if extras:
        mixture_students(units, references, zoo_dir, tasks, out, say)
    write_table(pa.Table.from_pylist([{k: v for k, v in u.items() if not k.endswith(("members", "weights"))
                                       and not k.startswith("_")}
                                      for u in units]), out / f"selection_units_{'' if held_out else 'selection_half_'}labels_{labels}.parquet")
    steps = product_sequence(plan, tasks, zoo_dir, out, accuracy, shortlist, race_epochs, say, runners) \
        if extras else []
    text = report(units, references, shortlist, race_epochs, time.perf_counter() - started, min(MIXTURE, shortlist),
                  labels)
    if steps:
        text += "\n\n" + sequence_text(steps)
    (out / f"selection_{'' if held_out else 'selection_half_'}labels_{labels}.txt").write_text(text + "\n")
    say(text)
    return {"units": units, "text": text, "sequence": steps}


def decision_row(result) -> dict:
    """A selection's decision row of selection.parquet: its evidence, prior and posterior."""
    return next(r for r in read_table(result.selection_path).to_pylist() if r["kind"] == "decision")


def prior_line(row: dict) -> str:
    """What the guard's prior was in a selection, in a few words (from its selection.parquet decision row)."""
    if not row.get("prior_tasks"):
        return "no prior"
    return f"prior {row['prior_mean']:+.3f} +- {row['prior_sd']:.3f} from {row['prior_tasks']} tasks"


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


NAMES = {"labels_only": "label-only", "top1": "top-1 teacher", "oracle": "oracle single teacher",
         "mix2": "top-2 mixture", "mix3": "top-3 mixture", "mix3i": "top-3, per-image weights",
         "select": "select (defaults)", "select_experience": "select, one experience table"}


def report(units: list[dict], plan: Plan, shortlist: int, race_epochs: int, seconds: float, k: int = MIXTURE,
           labels: int = 20) -> str:
    names = {**NAMES, "select_mixture": f"select --mixture {k}",
             "select_per_image": f"select --mixture {k} --per-image-weights"}
    columns = [c for c in COLUMNS if c in units[0]]
    tests = sorted({(u["target"], u["seed"]) for u in units})
    lines = [f"Selection benchmark, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(plan.teachers)} teachers, {len(units)} units: targets {', '.join(sorted({u['target'] for u in units}))} "
             f"x seeds {list(plan.seeds)}; {labels} training + {labels} validation labels per class, every other "
             f"image of the target's pool in the test split; students {plan.student.student}, {plan.student.epochs} "
             f"epochs; every reference (label-only, top-1, oracle, mixtures) trained with the selection's final "
             f"recipe (distill --refit: train + validation labels, last epoch of the cosine schedule); pipeline: "
             f"default scorers ({ScanConfig().scorers[0]} ranks), probe {min(PROBE_PER_CLASS, labels)} per class, "
             f"shortlist {shortlist}, race {race_epochs} epochs (ASHA), guard z={SelectConfig().guard_z:g}; "
             f"'one experience table': the same selections sharing one table, in seed-major order (the guard's "
             f"prior from the other tasks' races once 3 have raced); 95% bootstrap over targets "
             f"({len(tests)} units, {len({u['target'] for u in units})} targets)", "",
             f"{'student':<41} {'test accuracy':>14} {'95% interval':>18}"]
    for column in columns:
        values = per_target(units, column)
        low, high = interval(values)
        lines.append(f"{names[column]:<41} {values.mean():>14.3f}   [{low:.3f}, {high:.3f}]")
    lines.append("")
    for column in [c for c in ("select", "select_experience", "select_mixture", "select_per_image") if c in units[0]]:
        regret = per_target(units, "oracle") - per_target(units, column)
        gain = per_target(units, column) - per_target(units, "top1")
        worst = min(u[column] - u["labels_only"] for u in units)
        at_top1 = sum(u[column] >= u["top1"] - 1e-9 for u in units)
        distilled = sum(u.get({"select": "kept", "select_experience": "kept_experience",
                               "select_mixture": "kept_mixture", "select_per_image": "kept_per_image"}[column])
                        == "distilled" for u in units)
        low, high = interval(regret)
        glow, ghigh = interval(gain)
        lines.append(f"{names[column]}: regret to the oracle {regret.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"(goal <= +0.010); gain over top-1 {gain.mean():+.3f} [{glow:+.3f}, {ghigh:+.3f}] "
                     f"(goal >= 0), at or above top-1 in {at_top1} of {len(units)} units; worst unit against "
                     f"label-only {worst:+.3f} (goal >= -0.010); kept the distilled student in {distilled} of "
                     f"{len(units)}; training cost "
                     f"{np.mean([u['cost_' + column] for u in units]):.2f}x one distillation (goal <= 3x)")
    for column, picked in (("select_mixture", "picked_mixture"), ("select_per_image", "picked_per_image")):
        if column in units[0]:
            ratio = np.mean([u["cost_" + column] for u in units]) / np.mean([u["cost_select"] for u in units])
            lines.append(f"{names[column]}: the race picked the mixture in {sum(u[picked] for u in units)} of "
                         f"{len(units)} units; it cost {ratio:.2f}x select's (training FLOPs)")
    same = [u["select"] - u["winner_reference"] for u in units if u["kept"] == "distilled"] + \
        [u["select"] - u["labels_only"] for u in units if u["kept"] != "distilled"]
    lines.append(f"training noise: select's final student less the reference of the same teacher (or labels alone), "
                 f"same recipe and seed, Ray Train against the plain loop: mean {np.mean(same):+.3f}, sd "
                 f"{np.std(same, ddof=1) if len(same) > 1 else 0.0:.3f}, over {len(same)} units")
    lines += ["", rules_text(units), "", race_rules_text(units)]
    lines.append(f"wall time {seconds:.0f} s")
    return "\n".join(lines)


def race_record(result, accuracy: dict, target: str, seed: int) -> list[dict]:
    """A selection's race for the counterfactual race rules: its single-teacher trials in the scan's order
    (label-only last), each with its epochs, which validation images its best epoch got right, and the test
    accuracy of its teacher's reference student (the same final recipe)."""
    order = {row.teacher_id: index for index, row in enumerate(result.scan.ranked)}
    trials = sorted((t for t in result.trials if not members_of(t.candidate) and t.correct),
                    key=lambda t: order.get(t.candidate, len(order)))
    return [{"candidate": t.candidate, "epochs": t.epochs, "correct": np.array([c == "y" for c in t.correct]),
             "reference": accuracy[(target, seed, t.candidate)]} for t in trials]


def race_rule(unit: dict, race_z: float, guard_z: float) -> float | None:
    """The test accuracy a selection would have kept had its race overtaken the scan's order only by a lead
    beyond `race_z` paired standard errors (`selection.race_winner`), with its guard at `guard_z` (no prior):
    the winner's or label-only's reference student. None where the race is not on record."""
    race = unit.get("_race") or []
    if not race:
        return None
    longest = max(t["epochs"] for t in race)
    finished = [(t["candidate"], t["correct"]) for t in race if t["epochs"] == longest]
    if len({len(c) for _, c in finished}) != 1:
        return None
    winner = finished[0][0] if math.isinf(race_z) else race_winner(finished, race_z)  # inf: the scan's order
    reference = {t["candidate"]: t["reference"] for t in race}
    if winner == LABELS_ONLY:
        return reference[LABELS_ONLY]
    labels = next((name for name, _ in finished if name == LABELS_ONLY), None)
    if labels is None or len(unit["_folds"]) != len(finished[0][1]):
        return reference[winner]
    evidence, _ = cross_fitted(finished, labels, unit["_folds"], min(race_z, 1e6))
    return reference[winner] if decide(evidence, guard_z, winner).keep_distilled else reference[LABELS_ONLY]


def race_rules_text(units: list[dict]) -> str:
    """The race's overtaking margin against itself, counterfactually (each unit's own trials and references):
    how far a shortlisted teacher must lead the scan's better-ranked one on the validation images before the
    race prefers it; z = inf never overtakes (the scan's top-1, then the guard). The row at the defaults also
    says how often it reproduces what the selection kept."""
    known = [u for u in units if race_rule(u, 0.5, 0.5) is not None]
    if not known:
        return "race rules: no race on record"
    same = sum(abs(race_rule(u, 0.5, 0.5) - u["winner_reference" if u["kept"] == "distilled" else "labels_only"])
               < 1e-9 for u in known)
    lines = [f"the race's overtaking margin on these units (counterfactual, guard z=0.5, no prior; the defaults "
             f"reproduce what select kept in {same}/{len(known)})",
             f"{'race z':<10} {'gain over top-1':>16} {'at/above top-1':>15} {'regret to oracle':>17} "
             f"{'worst vs label-only':>20}"]
    for z in (0.0, 0.5, 1.0, 1.64, 2.0, float("inf")):
        for unit in known:
            unit["_rule"] = race_rule(unit, z, 0.5)
        gain = (per_target(known, "_rule") - per_target(known, "top1")).mean()
        regret = (per_target(known, "oracle") - per_target(known, "_rule")).mean()
        lines.append(f"{z:<10g} {gain:>+16.3f} {sum(u['_rule'] >= u['top1'] - 1e-9 for u in known):>11}/"
                     f"{len(known):<3} {regret:>+17.3f} {min(u['_rule'] - u['labels_only'] for u in known):>+20.3f}")
    for unit in known:
        del unit["_rule"]
    return "\n".join(lines)


def rules_text(units: list[dict]) -> str:
    """The guard's rules against each other on these units, counterfactually: a rule that keeps the distilled
    student scores the race winner's reference (same teacher, same final recipe, another draw of the same
    training), one that keeps label-only the label-only reference. The decisions are each unit's own (its
    race's paired counts, its shared-experience prior), so the rules differ only in how they weigh them."""
    def prior_of(unit: dict) -> Prior | None:
        return Prior(unit["prior_mean"], unit["prior_sd"], unit["prior_tasks"], "") if unit.get("prior_tasks") else None

    def keeps(unit: dict, z: float, with_prior: bool) -> bool:
        if unit["teacher"] == LABELS_ONLY or not unit.get("images"):
            return False
        return decide(Evidence(unit["better"], unit["worse"], unit["images"], ""), z, unit["teacher"],
                      prior_of(unit) if with_prior else None).keep_distilled

    rules = [(f"guard z={z:g}{', prior' if with_prior else ''}", partial(keeps, z=z, with_prior=with_prior))
             for z in (0.0, 0.5, 1.0) for with_prior in (False, True)]
    rules += [("always the race's winner", lambda u: u["teacher"] != LABELS_ONLY), ("always label-only", lambda u: False)]
    lines = ["the guard's rules on these units (counterfactual, from the references: see bench/selection.rules_text)",
             f"{'rule':<28} {'gain over top-1':>16} {'at/above top-1':>15} {'worst vs label-only':>20} {'kept':>5}"]
    for name, rule in rules:
        for unit in units:
            unit["_rule"] = unit["winner_reference"] if rule(unit) else unit["labels_only"]
        gain = (per_target(units, "_rule") - per_target(units, "top1")).mean()
        lines.append(f"{name:<28} {gain:>+16.3f} {sum(u['_rule'] >= u['top1'] - 1e-9 for u in units):>11}/"
                     f"{len(units):<3} {min(u['_rule'] - u['labels_only'] for u in units):>+20.3f} "
                     f"{sum(bool(rule(u)) for u in units):>5}")
    for unit in units:
        del unit["_rule"]
    return "\n".join(lines)


def main(quick: bool = typer.Option(False, help="the ranking benchmark's quick zoo, one held-out target, 1 epoch"),
         out: Path = typer.Option(Path("bench-out/ranking"), help="output folder: the ranking benchmark's, to reuse "
                                                                  "its zoo"),
         seeds: int = typer.Option(2, help="probe and student seeds per target"),
         epochs: int = typer.Option(20, help="student epochs (references, mixtures, the pipelines' finals)"),
         labels: list[int] = typer.Option([20], help="training (and as many validation) labels per class; "
                                                     "repeat for several tables"),
         extras: bool = typer.Option(False, help="also the fixed mixtures' students, --per-image-weights and the "
                                                 "product's sequence (always with --quick)"),
         selection_half: bool = typer.Option(False, help="the selection half's targets (where defaults are chosen) "
                                                         "instead of the held-out ones"),
         shortlist: int = typer.Option(3), race_epochs: int = typer.Option(5)) -> None:
    plan = quick_plan() if quick else replace(full_plan(seeds, epochs), targets=TARGETS + MORE_HELD_OUT)
    for count in labels:
        run(out, plan, 2 if quick else shortlist, 1 if quick else race_epochs, labels=count, extras=extras or quick,
            held_out=not selection_half)


if __name__ == "__main__":
    typer.run(main)
