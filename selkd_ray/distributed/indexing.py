"""Index new or changed teachers as Ray tasks across the cluster (hash, config, FLOPs), a chunk per task.

The zoo must be at the same path on every node, as for the runner actors that later load the teachers.
"""
from __future__ import annotations

from typing import Callable

import ray

from ..zoo import Entry, index_teacher
from ..zoo_layout import TeacherFolder
from .tasks import map_unordered

CHUNKS_PER_CPU = 4  # small enough chunks that a slow teacher does not hold the last worker alone


def index_chunk(folders: list[TeacherFolder]) -> list[Entry]:
    return [index_teacher(folder) for folder in folders]


def index_in_tasks(folders: list[TeacherFolder], progress: Callable[[int, int], None] | None = None) -> list[Entry]:
    """Entries for `folders`, in their order, computed by Ray tasks (one CPU each) over the cluster's CPUs."""
    if not folders:
        return []
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, -(-len(folders) // (cpus * CHUNKS_PER_CPU)))
    chunks = [folders[start:start + size] for start in range(0, len(folders), size)]
    entries: list[list[Entry] | None] = [None] * len(chunks)
    done = 0
    for index, result in map_unordered(index_chunk, [(chunk,) for chunk in chunks]):
        entries[index] = result
        done += len(result)
        if progress is not None:
            progress(done, len(folders))
    return [entry for chunk in entries for entry in chunk]
