"""The scan's ranked results table (scores.parquet) and the distillation metrics table."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from .atomic import read_table, write_table
from .fs import Location

SCORE_COLUMNS = [
    ("rank", pa.int32()),  # 1 = best; failed teachers have no rank
    ("teacher_id", pa.string()),
    ("path", pa.string()),
    ("architecture", pa.string()),
    ("content_hash", pa.string()),
    ("status", pa.string()),  # scored / cached (final round), dropped (halving), unfinished / skipped (budget), failed
    ("round", pa.int32()),  # the last halving round the teacher was scored in (0-based)
    ("node", pa.string()),  # the Ray node that ran it ('' when cached)
    ("error", pa.string()),
    ("score", pa.float64()),  # the ranking scorer's value
    ("probe_size", pa.int32()),  # probe images of its last round
    ("probe_hash", pa.string()),  # content hash of that probe: a rescan reuses the row when it matches
    ("flops", pa.int64()),  # forward FLOPs spent on this teacher in this scan, over its rounds (0 when cached)
    ("seconds", pa.float64()),
    ("num_teacher_classes", pa.int32()),
    ("cost_matrix", pa.list_(pa.float64())),  # conditional cost M (C_T x C_S), row-major, from the whole probe
    ("label_plan", pa.string()),  # which teacher class carries onto each target class
]


def write_scores(rows: list[dict], scorer_names: list[str], path: "str | Path | Location") -> "Path | str":
    schema = pa.schema(SCORE_COLUMNS + [(f"score_{name}", pa.float64()) for name in scorer_names])
    full_rows = [{name: row.get(name) for name in schema.names} for row in rows]
    return write_table(pa.Table.from_pylist(full_rows, schema=schema), path)


def read_scores(path: str | Path) -> list[dict]:
    return read_table(path).to_pylist()


def write_metrics(rows: list[dict], path: str | Path) -> Path:
    return write_table(pa.Table.from_pylist(rows), path)
