"""The scan history (history.parquet beside scores.parquet): one row per scan, appended atomically.

A scheduled scan of a growing zoo reads it to show what each run cost and how the top teachers changed.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from .atomic import read_table, write_table
from .fs import Location

HISTORY_COLUMNS = [
    ("scanned_at", pa.string()),  # ISO 8601, UTC, when the scan finished
    ("task", pa.string()),  # task name
    ("task_hash", pa.string()),
    ("zoo_size", pa.int32()),  # teachers in the catalogue
    ("new", pa.int32()),  # teachers (new or changed files) that the previous scan of this output had not seen
    ("ran", pa.int32()),  # teachers that cost FLOPs in this scan (new ones, or cached ones on a larger probe)
    ("cached", pa.int32()),  # answered from the cache or the last scan
    ("failed", pa.int32()),
    ("dropped", pa.int32()),  # dropped by successive halving
    ("skipped", pa.int32()),  # left out by the budget
    ("flops", pa.int64()),  # forward FLOPs this scan spent
    ("seconds", pa.float64()),
    ("budget", pa.string()),  # the budget as given ('' for none)
    ("budget_flops", pa.float64()),  # the FLOPs budget (null when none or a time budget)
    ("round_flops", pa.list_(pa.int64())),  # cumulative FLOPs at the end of each halving round
    ("scorer", pa.string()),  # the ranking scorer
    ("top_teachers", pa.list_(pa.string())),  # best first
    ("top_scores", pa.list_(pa.float64())),
]
SCHEMA = pa.schema(HISTORY_COLUMNS)


def read_history(where: "str | Path | Location") -> list[dict]:
    """Every scan so far, oldest first; [] when there is no history yet."""
    location = Location(where)
    return (read_table(location, ("scanned_at", "zoo_size", "top_teachers"), "a history table").to_pylist()
            if location.is_file() else [])


def append_history(row: dict, where: "str | Path | Location") -> "Path | str":
    """Add one scan's row (the caller holds the scan lock, so appends never race)."""
    rows = read_history(where) + [row]
    return write_table(pa.Table.from_pylist([{n: r.get(n) for n in SCHEMA.names} for r in rows], schema=SCHEMA),
                       where)
