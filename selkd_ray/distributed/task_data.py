"""Survey a large task's images on Ray Data: its chunks (Parquet row groups, groups of image files) are decoded
in parallel across the cluster, and only each image's shape and content hash come back to the driver.

A small task is surveyed in the calling process: a Ray start or a pipeline's start-up costs more than it saves.
The task's files must be at the same path on every node, as the zoo's are.
"""
from __future__ import annotations

from typing import Iterable

import ray

from ..io.task_images import Chunk, Survey, survey, survey_here
from .runtime import connect, quiet_data

ON_RAY_FROM = 4096  # images; fewer are surveyed here


def chunk_rows(chunk: Chunk) -> int:
    return len(chunk.rows) or len(chunk.files)


def survey_row(row: dict) -> dict:
    return {"index": row["index"], "survey": survey(row["chunk"])}


def survey_on_ray(chunks: list[Chunk]) -> list[Survey]:
    """Each chunk's survey, in the chunks' order, computed by Ray Data tasks (one CPU each)."""
    quiet_data()
    items = [{"index": index, "chunk": chunk} for index, chunk in enumerate(chunks)]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map(survey_row, num_cpus=1)
    surveys: list[Survey | None] = [None] * len(chunks)
    for row in dataset.iter_rows():
        surveys[int(row["index"])] = row["survey"]
    return surveys  # type: ignore[return-value]


def surveyor(address: str | None = None, on_ray_from: int = ON_RAY_FROM):
    """The task reader's surveyor: on Ray Data for a task of `on_ray_from` images or more, else here."""

    def survey_chunks(chunks: list[Chunk]) -> Iterable[Survey]:
        if sum(chunk_rows(chunk) for chunk in chunks) < on_ray_from or len(chunks) < 2:
            return survey_here(chunks)
        connect(address)
        return survey_on_ray(chunks)

    return survey_chunks

