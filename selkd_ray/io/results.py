"""The jobs' result tables: scores.parquet, selection.parquet, a student's metrics; each schema derived from its
row record (`selkd_ray.rows`) by `io/schema.py`."""
from __future__ import annotations

from pathlib import Path

from ..rows import SELECTION_ROWS, EpochRow, ScoreRow, from_row
from .atomic import read_table
from .fs import Location
from .schema import schema_of, write_rows


def write_scores(rows: list[ScoreRow], scorer_names: list[str], path: "str | Path | Location") -> "Path | str":
    return write_rows(rows, schema_of(ScoreRow, expand=tuple(scorer_names)), path)


def read_scores(path: "str | Path | Location") -> list[ScoreRow]:
    return [from_row(ScoreRow, row) for row in read_table(path, ScoreRow.CORE, "a scores table").to_pylist()]


def write_metrics(rows: list[EpochRow], path: str | Path) -> Path:
    return write_rows(rows, schema_of(EpochRow), path)


def write_selection(rows: list, path: "str | Path | Location") -> "Path | str":
    """Trial, stage and decision rows in one table (the `kind` column tells them apart)."""
    return write_rows(rows, schema_of(*SELECTION_ROWS), path)


def read_selection(path: "str | Path | Location") -> list[dict]:
    location = Location(path)
    return read_table(location, ("kind", "candidate"), "a selection table").to_pylist() if location.is_file() else []
