"""Survey a large task's images on Ray Data: its chunks (Parquet row groups, groups of image files) are decoded
in parallel across the cluster, and only each image's shape and content hash come back to the driver.

A small task is surveyed in the calling process: a Ray start or a pipeline's start-up costs more than it saves.
The task's files must be at the same path on every node, as the zoo's are.
"""
from __future__ import annotations

from typing import Iterable

from ..io.task_images import Chunk, Survey, survey, survey_here
from .fan_out import fan_out_in_order
from .runtime import connect

ON_RAY_FROM = 4096  # images; fewer are surveyed here


def chunk_rows(chunk: Chunk) -> int:
    return len(chunk.rows) or len(chunk.files)


def survey_on_ray(chunks: list[Chunk]) -> list[Survey]:
    """Each chunk's survey, in the chunks' order, computed on Ray Data (one CPU a chunk)."""
    return fan_out_in_order(survey, [(chunk,) for chunk in chunks])


def surveyor(address: str | None = None, on_ray_from: int = ON_RAY_FROM):
    """The task reader's surveyor: on Ray Data for a task of `on_ray_from` images or more, else here."""

    def survey_chunks(chunks: list[Chunk]) -> Iterable[Survey]:
        if sum(chunk_rows(chunk) for chunk in chunks) < on_ray_from or len(chunks) < 2:
            return survey_here(chunks)
        connect(address)
        return survey_on_ray(chunks)

    return survey_chunks

