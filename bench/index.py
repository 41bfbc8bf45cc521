"""Indexing benchmark: a zoo of N new teachers indexed on Ray Data with one worker against two.

    .venv/bin/python bench/index.py            # 1,000 teachers, 2 pairs (about 5 minutes on 2 cores)
    .venv/bin/python bench/index.py --quick    # 30 teachers, 1 pair, to check the script works

Each measurement starts a fresh local Ray with 1 or 2 CPUs (not timed), then times `index_in_tasks` over every
teacher folder: task submission, the workers' start-up and imports, hashing each teacher's files, building its
model from its config, counting its FLOPs and reading its weights' header. Not timed: Ray's start, finding the
folders (`find_teachers`, the same for both) and writing the catalogue. Pairs run in ABBA order, and the
ratio is the median one-worker time over the median two-worker time.
"""
from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import ray
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, synthetic_zoo  # noqa: E402

from selkd_ray.distributed.indexing import index_in_tasks  # noqa: E402
from selkd_ray.distributed.runtime import connect  # noqa: E402
from selkd_ray.zoo.layout import find_teachers  # noqa: E402


def timed_index(zoo: Path, workers: int) -> float:
    """Seconds to index every teacher of `zoo` on Ray Data on a fresh local Ray of `workers` CPUs."""
    connect(num_cpus=workers)
    try:
        folders = find_teachers(zoo)
        started = time.perf_counter()
        entries = index_in_tasks(folders)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    bad = [spec.error for spec, _, _ in entries if spec.error]
    assert len(entries) == len(folders) and not bad, bad[:1]
    return seconds


def main(teachers: int = typer.Option(1000, help="Teachers in the zoo."),
         pairs: int = typer.Option(2, help="(one worker, two workers) pairs, in ABBA order."),
         quick: bool = typer.Option(False, help="30 teachers, 1 pair: checks the script works."),
         out: Path = typer.Option(Path("bench-out/index"), help="Where the zoo is kept between runs.")) -> None:
    if quick:
        teachers, pairs = 30, 1
    zoo = out / f"zoo-{teachers}"
    started = time.perf_counter()
    synthetic_zoo(zoo, teachers)
    print(f"zoo: {teachers} tiny timm teachers (test_efficientnet, test_resnet, test_byobnet; 28x28 grey) "
          f"ready in {time.perf_counter() - started:.0f} s", flush=True)
    times: dict[int, list[float]] = {1: [], 2: []}
    for pair in range(pairs):
        for workers in ((1, 2) if pair % 2 == 0 else (2, 1)):
            times[workers].append(timed_index(zoo, workers))
            print(f"pair {pair + 1}: {workers} worker(s): {times[workers][-1]:.1f} s", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"\n{datetime.date.today()}, {machine()}")
    print(f"index {teachers} new teachers on Ray Data: 1 worker {one:.1f} s, 2 workers {two:.1f} s "
          f"(medians of {pairs}); speed-up {one / two:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    typer.run(main)
