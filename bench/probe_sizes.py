"""Each scorer's smallest useful probe: the ranking benchmark scanned again at several probe sizes.

The ranking benchmark's zoo, targets, seeds and ground-truth students (cached by `bench/ranking.py`: run it
first, or this trains them) are scanned again with 2, 3, 5, 10 and 20 labelled images per class (20: every
training label of the benchmark's tasks), every scorer on each probe. Per size and scorer: the mean weighted
Kendall tau against the ground truth over targets (seeds averaged within a target, the independent unit), and
in how many units the scan marked the scorer uninformative (`scoring/ties.py`: one value for at least half of
the teachers). A scorer's **minimum useful probe** is the smallest size from which, at every larger size too,
no unit marks it uninformative and its mean tau is within TOLERANCE of its tau on the largest probe: below
it, the scorer's order is a tie-break or a worse ranking than more labels would give. Every target counts
(no default is chosen here, so the held-out rule has nothing to protect).

    .venv/bin/python bench/probe_sizes.py --out /work/bench-out/ranking   # the ranking benchmark's output
    .venv/bin/python bench/probe_sizes.py --quick                         # its quick zoo, sizes 2 and 5
"""
from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from ranking import (SPLITS, Plan, build_zoo, evaluate_scorers, full_plan,  # noqa: E402
                     ground_truth, per_target, quick_plan, scan_all)

from selkd_ray.distributed.runtime import connect
from selkd_ray.io.atomic import write_table
from selkd_ray.scoring import SCORERS
from selkd_ray.scoring.registry import PREDICTION_FREE_SCORERS, TASK
from selkd_ray.scoring.ties import uninformative

SIZES, QUICK_SIZES = (2, 3, 5, 10, 20), (2, 5)
TOLERANCE = 0.05  # weighted tau within this of the largest probe's counts as "as good as more labels"


def scorers_timed() -> list[str]:
    """Every teacher scorer that reads the probe (the static priors and label names do not depend on it)."""
    return [name for name in SCORERS.names()
            if name not in SCORERS.tagged(TASK) and name not in PREDICTION_FREE_SCORERS]


def scan_sizes(plan: Plan, zoo_dir: Path, tasks: dict, sizes: tuple[int, ...], scorers: list[str], out: Path,
               say, runners=None) -> dict:
    """{size: {(target, seed): rows}}: the ranking benchmark's scans (`scan_all`) at each size, every one on one
    runner pool, each in its own folder (the ranking benchmark's scans are left as they are)."""
    from selkd_ray.distributed.runners import RunnerPool

    scans: dict = {}
    pool = runners or RunnerPool().ready()
    try:
        for size in sizes:
            scans[size] = scan_all(plan, zoo_dir, tasks, scorers, out, lambda _: None, pool, probe_per_class=size,
                                   folder="probe-sizes", suffix=f"-p{size}")
            say(f"probe of {size} per class: {len(scans[size])} scans")
    finally:
        if runners is None:
            pool.close()
    return scans


def size_rows(scans: dict, truth: list[dict], scorers: list[str]) -> list[dict]:
    """Per (size, scorer): mean weighted tau over targets, and the units where the scorer tied."""
    rows = []
    for size, by_unit in sorted(scans.items()):
        targets = per_target(evaluate_scorers(by_unit, truth, scorers))
        tied = {name: 0 for name in scorers}
        for unit_rows in by_unit.values():
            for name in uninformative(unit_rows, scorers):
                tied[name] += 1
        for name in scorers:
            taus = [r["weighted_tau"] for r in targets if r["scorer"] == name]
            rows.append({"size": size, "scorer": name, "weighted_tau": float(np.nanmean(taus)),
                         "targets": len(taus), "tied_units": tied[name], "units": len(by_unit)})
    return rows


def minimum_sizes(rows: list[dict]) -> dict[str, int | None]:
    """{scorer: the smallest size from which every size is untied and within TOLERANCE of the largest probe's
    tau; None when not even the largest is untied}."""
    found: dict[str, int | None] = {}
    for name in sorted({r["scorer"] for r in rows}):
        mine = sorted((r for r in rows if r["scorer"] == name), key=lambda r: r["size"])
        top = mine[-1]["weighted_tau"]
        good = [r["tied_units"] == 0 and r["weighted_tau"] >= top - TOLERANCE for r in mine]
        found[name] = None
        for index in range(len(mine) - 1, -1, -1):  # walk down while every size is good
            if not good[index]:
                break
            found[name] = mine[index]["size"]
    return found


def text(rows: list[dict], minimum: dict, plan: Plan, seconds: float) -> str:
    sizes = sorted({r["size"] for r in rows})
    cell = {(r["scorer"], r["size"]): r for r in rows}
    units = rows[0]["units"] if rows else 0
    lines = [f"Probe sizes, {datetime.date.today().isoformat()}, on {machine()}",
             f"{len(plan.teachers)} teachers, {rows[0]['targets'] if rows else 0} targets, "
             f"seeds {list(plan.seeds)}; mean weighted tau over targets at each probe size (images per class), "
             f"* where the scan marked the scorer uninformative in at least one of the {units} units; minimum "
             f"useful probe: the smallest size from which it is untied and within {TOLERANCE} of its tau at "
             f"{sizes[-1]} (>={sizes[-1]}: only the largest probe measured qualifies; none: tied even there)",
             "",
             f"{'scorer':<13}" + "".join(f"{s:>9}" for s in sizes) + f"{'minimum':>10}"]
    for name in sorted(minimum):
        cells = "".join(f"{cell[(name, s)]['weighted_tau']:>+8.3f}{'*' if cell[(name, s)]['tied_units'] else ' '}"
                        for s in sizes)
        least = minimum[name]
        shown = "none" if least is None else (f">={least}" if least == sizes[-1] else str(least))
        lines.append(f"{name:<13}{cells}{shown:>10}")
    lines.append(f"wall time {seconds:.0f} s")
    return "\n".join(lines)


def run(out: Path, plan: Plan, sizes: tuple[int, ...], say=print, runners=None) -> dict:
    out = Path(out).resolve()
    started = time.perf_counter()
    connect()
    zoo_dir = out / "zoo"
    build_zoo(plan, zoo_dir, say)
    tasks = {target.name: target.task(SPLITS) for target in plan.targets}
    truth = ground_truth(plan, zoo_dir, tasks, out, say)
    scorers = scorers_timed()
    rows = size_rows(scan_sizes(plan, zoo_dir, tasks, sizes, scorers, out, say, runners), truth, scorers)
    minimum = minimum_sizes(rows)
    write_table(pa.Table.from_pylist(rows), out / "probe_sizes.parquet")
    report = text(rows, minimum, plan, time.perf_counter() - started)
    (out / "probe_sizes.txt").write_text(report + "\n")
    say(report)
    return {"rows": rows, "minimum": minimum, "text": report}


def main(quick: bool = typer.Option(False, help="the ranking benchmark's quick zoo and targets, sizes 2 and 5"),
         out: Path = typer.Option(Path("bench-out/ranking"), help="the ranking benchmark's output folder")) -> None:
    run(out, quick_plan() if quick else full_plan(), QUICK_SIZES if quick else SIZES)


if __name__ == "__main__":
    typer.run(main)
