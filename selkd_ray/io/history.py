"""The scan history (history.parquet beside scores.parquet): one row per scan, appended atomically.

A scheduled scan of a growing zoo reads it to show what each run cost and how the top teachers changed.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..rows import HistoryRow, as_row
from .atomic import read_table, write_table
from .fs import Location
from .schema import schema_of

SCHEMA = schema_of(HistoryRow)


def read_history(where: "str | Path | Location") -> list[dict]:
    """Every scan so far, oldest first; [] when there is no history yet."""
    location = Location(where)
    return (read_table(location, ("scanned_at", "zoo_size", "top_teachers"), "a history table").to_pylist()
            if location.is_file() else [])


def append_history(row: HistoryRow, where: "str | Path | Location") -> "Path | str":
    """Add one scan's row (the caller holds the scan lock, so appends never race)."""
    rows = read_history(where) + [as_row(row)]
    return write_table(pa.Table.from_pylist([{n: r.get(n) for n in SCHEMA.names} for r in rows], schema=SCHEMA),
                       where)
