"""Index new or changed teachers on Ray Data across the cluster (hash, config, FLOPs), a chunk per call.

The zoo must be at the same path on every node, as for the runner actors that later load the teachers.
"""
from __future__ import annotations

import time
from typing import Callable

import ray

from ..zoo.index import Entry, index_teacher
from ..zoo.layout import TeacherFolder
from .fan_out import fan_out

CHUNKS_PER_CPU = 4  # small enough chunks that a slow teacher does not hold the last worker alone


def index_chunk(folders: list[TeacherFolder]) -> list[Entry]:
    return [index_teacher(folder) for folder in folders]


def index_in_tasks(folders: list[TeacherFolder], progress: Callable[[int, int], None] | None = None) -> list[Entry]:
    """Entries for `folders`, in their order, computed on Ray Data (one CPU a chunk) over the cluster's CPUs."""
    if not folders:
        return []
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    free = ray.available_resources().get("CPU", 0)
    size = max(1, -(-len(folders) // (cpus * CHUNKS_PER_CPU)))
    chunks = [folders[start:start + size] for start in range(0, len(folders), size)]
    entries: list[list[Entry] | None] = [None] * len(chunks)
    done = 0
    for index, result in fan_out(index_chunk, [(chunk,) for chunk in chunks]):
        entries[index] = result
        done += len(result)
        if progress is not None:
            progress(done, len(folders))
    settle(free)
    return [entry for chunk in entries for entry in chunk]


def settle(free: float, timeout_s: float = 5.0) -> None:
    """Wait until the CPU slots our tasks held show as free again: the cluster's resource view lags behind
    finished tasks (on another node most), and the scan's runner pool sizes itself from it right after."""
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < free and time.monotonic() < deadline:
        time.sleep(0.05)
