"""The jobs' result tables: scores.parquet, selection.parquet, a student's metrics; each schema derived from its
row record (`selkd_ray.rows`) by `io/schema.py`."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..rows import SELECTION_ROWS, EpochRow, ScoreRow, from_row
from .atomic import read_table
from .fs import Location
from .schema import schema_of, write_rows


def write_scores(rows: list[ScoreRow], scorer_names: list[str], path: "str | Path | Location",
                 uninformative: dict[str, str] | None = None) -> "Path | str":
    """`uninformative`: the scorers whose values tie (scoring/ties.py), kept in the schema metadata
    (`selkd.uninformative`, JSON: scorer -> why)."""
    schema = schema_of(ScoreRow, expand=tuple(scorer_names))
    if uninformative:
        schema = schema.with_metadata({**(schema.metadata or {}), b"selkd.uninformative": json.dumps(uninformative)})
    return write_rows(rows, schema, path)


def uninformative_in(path: "str | Path | Location") -> dict[str, str]:
    """The scorers a scores table marks as tied, {} when none (or a table from before the mark)."""
    location = Location(path)
    try:
        metadata = read_table(location, ScoreRow.CORE, "a scores table").schema.metadata or {}
        return json.loads(metadata.get(b"selkd.uninformative", b"{}"))
    except ValueError:
        return {}


def read_scores(path: "str | Path | Location") -> list[ScoreRow]:
    return [from_row(ScoreRow, row) for row in read_table(path, ScoreRow.CORE, "a scores table").to_pylist()]


def write_metrics(rows: list[EpochRow], path: str | Path, run: str = "", settings: dict | None = None) -> Path:
    """A student's per-epoch table; its schema metadata keeps the run (name and key) and the settings it was
    distilled with, so a later distillation into the same name can tell whether it is the same one."""
    schema = schema_of(EpochRow).with_metadata({"selkd.run": run, "selkd.settings": json.dumps(settings or {})})
    return write_rows(rows, schema, path)


def metrics_run(path: str | Path) -> tuple[str, dict] | None:
    """(run, settings) a student's metrics table was written with; None when there is none, or it has no
    record of them (a table from an earlier version)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
        return metadata[b"selkd.run"].decode(), json.loads(metadata.get(b"selkd.settings", b"{}"))
    except (KeyError, ValueError, OSError, pa.ArrowException):
        return None


def write_selection(rows: list, path: "str | Path | Location") -> "Path | str":
    """Trial, stage and decision rows in one table (the `kind` column tells them apart)."""
    return write_rows(rows, schema_of(*SELECTION_ROWS), path)


def read_selection(path: "str | Path | Location") -> list[dict]:
    location = Location(path)
    return read_table(location, ("kind", "candidate"), "a selection table").to_pylist() if location.is_file() else []
