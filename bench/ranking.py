"""Ground-truth ranking benchmark: how well does each scorer predict which teacher helps a student most?

For every target task and seed it distils one student from every teacher of a zoo (same short budget) and
trains a label-only student; a teacher's true gain is its student's test accuracy minus the label-only one.
Each scorer's ranking is compared with the true gains: weighted Kendall tau, Pearson r, top-1 / top-3 regret,
with bootstrap confidence intervals over (target, seed) units.

    .venv/bin/python bench/ranking.py            # the full run (>= 20 teachers, 3 targets, 3 seeds)
    .venv/bin/python bench/ranking.py --quick    # small but real: 4 teachers, 1 target, 1 seed

Ground-truth students are cached by (teacher hash, task hash, budget, seed) under OUT/ground_truth, so a
rerun after adding a scorer costs only the scoring.
"""
from __future__ import annotations

import datetime
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from selkd_ray.api import index_zoo, scan, student_accuracy_here
from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.demo.data import DIGIT_NAMES, target_task
from selkd_ray.demo.zoo import MORE_RECIPES, RECIPES, TeacherRecipe, train_teacher
from selkd_ray.distributed.runtime import connect
from selkd_ray.distributed.tasks import map_unordered
from selkd_ray.io.atomic import read_table, write_table
from selkd_ray.models import WEIGHTS_FILE
from selkd_ray.records import content_hash
from selkd_ray.scores import SCORERS

TARGETS = ((3, 5, 8), (1, 4, 7), (0, 2, 6, 9))
SPLITS = {"train": 10, "val": 20, "test": 100}  # per class: few labels, the use case; the rest unlabelled
QUICK_RECIPES = ("digits-3589", "digits-17", "parity", "random-labels")


@dataclass(frozen=True)
class Plan:
    recipes: tuple[TeacherRecipe, ...]
    targets: tuple[tuple[int, ...], ...]
    seeds: tuple[int, ...]
    teacher_epochs: int
    student: DistillConfig
    bootstrap: int = 2000


def full_plan(seeds: int = 3, epochs: int = 15) -> Plan:
    return Plan(RECIPES + MORE_RECIPES, TARGETS, tuple(range(seeds)), 4, DistillConfig(epochs=epochs))


def quick_plan() -> Plan:
    recipes = tuple(r for r in RECIPES if r.teacher_id in QUICK_RECIPES)
    return Plan(recipes, TARGETS[:1], (0,), 1, DistillConfig(epochs=2), bootstrap=200)


def build_zoo(plan: Plan, zoo_dir: Path, say) -> None:
    """Train the missing teachers as parallel Ray tasks (one CPU slot each)."""
    calls = [(recipe, i, str(zoo_dir / recipe.teacher_id), plan.teacher_epochs)
             for i, recipe in enumerate(plan.recipes) if not (zoo_dir / recipe.teacher_id / WEIGHTS_FILE).is_file()]
    for done, (index, folder) in enumerate(map_unordered(train_teacher, calls), 1):
        say(f"[zoo {done}/{len(calls)}] trained {Path(folder).name}")


def budget_key(config: DistillConfig) -> str:
    """What decides a ground-truth student besides teacher, task and seed."""
    return content_hash(*(f"{k}={v}" for k, v in sorted(asdict(replace(config, seed=0)).items())))[:16]


def ground_truth_key(teacher_hash: str, task_hash: str, config: DistillConfig, seed: int) -> str:
    return content_hash(teacher_hash, task_hash, budget_key(config), seed)[:24]


def ground_truth(plan: Plan, zoo_dir: Path, tasks: dict, out: Path, say) -> list[dict]:
    """One row per (target, seed, teacher or label-only): the student's test accuracy, cached by key."""
    specs, _ = index_zoo(zoo_dir, out / "catalogue.parquet")
    cache_dir = out / "ground_truth"
    rows, calls, keys = [], [], []
    for target, task in tasks.items():
        for seed in plan.seeds:
            for spec in [None] + specs:
                teacher_id = spec.teacher_id if spec else "labels-only"
                key = ground_truth_key(spec.content_hash if spec else "labels-only", task.content_hash,
                                       plan.student, seed)
                row = {"target": target, "seed": seed, "teacher_id": teacher_id, "key": key}
                path = cache_dir / f"{key}.parquet"
                if path.is_file():
                    rows.append({**row, "test_accuracy": read_table(path).column("test_accuracy")[0].as_py(),
                                 "cached": True})
                    continue
                keys.append(row)
                calls.append(("@" + target, spec.path if spec else None, replace(plan.student, seed=seed)))
    say(f"ground truth: {len(rows)} students cached, {len(calls)} to train")
    started = time.perf_counter()
    for done, (index, result) in enumerate(map_unordered(student_accuracy_here, calls, shared=tasks), 1):
        row = {**keys[index], "test_accuracy": result["test_accuracy"], "cached": False}
        write_table(pa.Table.from_pylist([row]), cache_dir / f"{row['key']}.parquet")
        rows.append(row)
        say(f"[students {done}/{len(calls)}] {row['target']} seed {row['seed']} {row['teacher_id']}: "
            f"{row['test_accuracy']:.3f} ({time.perf_counter() - started:.0f} s)")
    return rows


def unit_metrics(scores: np.ndarray, accuracy: np.ndarray) -> dict:
    """Weighted Kendall tau, Pearson r and regrets of one scorer on one (target, seed) unit."""
    best = accuracy.max()  # a teacher the scorer cannot score still counts as the one it missed
    ok = np.isfinite(scores)
    scores, accuracy = scores[ok], accuracy[ok]
    order = np.argsort(-scores, kind="stable")
    return {"weighted_tau": float(stats.weightedtau(scores, accuracy).statistic),
            "pearson": float(np.corrcoef(scores, accuracy)[0, 1]) if scores.std() > 0 else 0.0,
            "regret_top1": float(best - accuracy[order[0]]),
            "regret_top3": float(best - accuracy[order[:3]].max())}


METRICS = ("weighted_tau", "pearson", "regret_top1", "regret_top3")


def evaluate_scorers(scans: dict, truth: list[dict], scorers: list[str]) -> list[dict]:
    """Per (target, seed, scorer): the unit's metrics, from the scan's scores and the students' accuracies."""
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"] for r in truth}
    units = sorted({(r["target"], r["seed"]) for r in truth})
    rows = []
    for target, seed in units:
        teachers = [row for row in scans[target] if row["status"] != "failed"]
        acc = np.array([accuracy[(target, seed, row["teacher_id"])] for row in teachers])
        labels_only = accuracy[(target, seed, "labels-only")]
        for scorer in scorers:
            values = np.array([row[f"score_{scorer}"] for row in teachers], dtype=float)
            rows.append({"target": target, "seed": seed, "scorer": scorer, "labels_only_accuracy": labels_only,
                         "best_gain": float(acc.max() - labels_only), **unit_metrics(values, acc)})
    return rows


def summarise(unit_rows: list[dict], scorers: list[str], resamples: int, seed: int = 0) -> list[dict]:
    """Mean of each metric over units, with a 95% bootstrap interval over (target, seed) units."""
    rng = np.random.default_rng(seed)
    summary = []
    for scorer in scorers:
        mine = [r for r in unit_rows if r["scorer"] == scorer]
        row = {"scorer": scorer, "units": len(mine)}
        draws = rng.integers(0, len(mine), size=(resamples, len(mine)))
        for metric in METRICS:
            values = np.array([r[metric] for r in mine])
            means = np.nanmean(values[draws], axis=1)
            row[metric] = float(np.nanmean(values))
            row[f"{metric}_low"], row[f"{metric}_high"] = (float(v) for v in np.nanpercentile(means, [2.5, 97.5]))
        summary.append(row)
    return sorted(summary, key=lambda r: -r["weighted_tau"])


def table(summary: list[dict]) -> str:
    header = (f"{'scorer':<13} {'weighted tau':>22} {'Pearson r':>22} {'top-1 regret':>22} {'top-3 regret':>22}")
    lines = [header, "-" * len(header)]
    for row in summary:
        cells = [f"{row[m]:+.3f} [{row[m + '_low']:+.3f},{row[m + '_high']:+.3f}]" for m in METRICS]
        lines.append(f"{row['scorer']:<13} " + " ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def plot(scans: dict, truth: list[dict], scorers: list[str], path: Path) -> Path:
    """Score (standardised within each target) against true gain (averaged over seeds), one panel a scorer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains: dict[tuple[str, str], list[float]] = {}
    labels_only = {(r["target"], r["seed"]): r["test_accuracy"] for r in truth if r["teacher_id"] == "labels-only"}
    for r in truth:
        if r["teacher_id"] != "labels-only":
            gains.setdefault((r["target"], r["teacher_id"]), []).append(
                r["test_accuracy"] - labels_only[(r["target"], r["seed"])])
    columns = 4
    rows_n = (len(scorers) + columns - 1) // columns
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.4 * columns, 3.0 * rows_n), squeeze=False)
    for ax, scorer in zip(axes.ravel(), scorers):
        for colour, (target, rows) in zip(("#4477aa", "#ee6677", "#228833", "#ccbb44"), scans.items()):
            rows = [r for r in rows if r["status"] != "failed" and np.isfinite(r[f"score_{scorer}"])]
            values = np.array([r[f"score_{scorer}"] for r in rows])
            z = (values - values.mean()) / (values.std() or 1.0)
            ax.scatter(z, [np.mean(gains[(target, r["teacher_id"])]) for r in rows], s=14, color=colour,
                       label=target)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_title(scorer, fontsize=10)
        ax.set_xlabel("score (z within target)", fontsize=8)
        ax.set_ylabel("true gain (accuracy)", fontsize=8)
    for ax in axes.ravel()[len(scorers):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_benchmark(out: Path, plan: Plan, say=print) -> dict:
    out = Path(out).resolve()
    started = time.perf_counter()
    connect()
    zoo_dir = out / "zoo"
    build_zoo(plan, zoo_dir, say)
    scorers = SCORERS.names()
    tasks = {"-".join(DIGIT_NAMES[d] for d in digits_): target_task(0, digits_, SPLITS) for digits_ in plan.targets}
    scans = {}
    for target, task in tasks.items():
        config = ScanConfig(scorers=tuple(scorers), probe_per_class=SPLITS["train"])
        scans[target] = scan(zoo_dir, task, out / "scans" / target, config).rows
        say(f"scanned {len(scans[target])} teachers for {target}")
    truth = ground_truth(plan, zoo_dir, tasks, out, say)
    units = evaluate_scorers(scans, truth, scorers)
    summary = summarise(units, scorers, plan.bootstrap)
    write_table(pa.Table.from_pylist(units), out / "ranking_units.parquet")
    write_table(pa.Table.from_pylist(summary), out / "ranking_summary.parquet")
    write_table(pa.Table.from_pylist(truth), out / "ground_truth.parquet")
    figure = plot(scans, truth, scorers, out / "ranking.png")
    text = "\n".join([
        f"Ranking benchmark, {datetime.date.today().isoformat()}, on {machine()}",
        f"{len(plan.recipes)} teachers, targets {', '.join(tasks)}, seeds {list(plan.seeds)}, "
        f"{SPLITS['train']} labels per class, students {plan.student.student} for {plan.student.epochs} epochs "
        f"(loss {plan.student.loss}); mean over {len(units) // len(scorers)} (target, seed) units, "
        f"95% bootstrap intervals",
        table(summary),
        f"winner by weighted tau: {summary[0]['scorer']}; wall time {time.perf_counter() - started:.0f} s",
        f"tables: {out / 'ranking_summary.parquet'}, {out / 'ranking_units.parquet'}; plot: {figure}"])
    (out / "ranking.txt").write_text(text + "\n")
    say(text)
    return {"summary": summary, "units": units, "truth": truth, "plot": figure, "text": text}


def main(quick: bool = typer.Option(False, help="small but real: 4 teachers, 1 target, 1 seed, 2 epochs"),
         out: Path = typer.Option(Path("bench-out/ranking"), help="output folder (zoo, caches, tables, plot)"),
         seeds: int = typer.Option(3, help="student seeds per target"),
         epochs: int = typer.Option(15, help="student epochs (the ground-truth budget)")) -> None:
    run_benchmark(out, quick_plan() if quick else full_plan(seeds, epochs))


if __name__ == "__main__":
    typer.run(main)
