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
    ("round_scores", pa.list_(pa.float64())),  # the ranking score after each halving round it reached
]


def write_scores(rows: list[dict], scorer_names: list[str], path: "str | Path | Location") -> "Path | str":
    schema = pa.schema(SCORE_COLUMNS + [(f"score_{name}", pa.float64()) for name in scorer_names])
    full_rows = [{name: row.get(name) for name in schema.names} for row in rows]
    return write_table(pa.Table.from_pylist(full_rows, schema=schema), path)


SCORES_CORE = ("teacher_id", "status", "content_hash", "score", "rank")  # what every version of the table has


def read_scores(path: "str | Path | Location") -> list[dict]:
    return read_table(path, SCORES_CORE, "a scores table").to_pylist()


def write_metrics(rows: list[dict], path: str | Path) -> Path:
    return write_table(pa.Table.from_pylist(rows), path)


SELECTION_COLUMNS = [
    ("kind", pa.string()),  # trial (one race candidate) / stage (what a stage spent) / decision (the guard)
    ("candidate", pa.string()),  # teacher id, 'labels-only', or the stage's name
    ("lam", pa.float64()),  # weight of the OT term for a trial
    ("epochs", pa.int32()),  # epochs the trial ran before it finished or was stopped; the race row: the longest trial's
    ("val_accuracy", pa.float64()),
    ("test_accuracy", pa.float64()),
    ("status", pa.string()),  # winner / finished / stopped early; kept / rejected for a decision
    ("flops", pa.float64()),  # training FLOPs spent (forward FLOPs for the scan and the teacher outputs)
    ("seconds", pa.float64()),
    ("budget", pa.float64()),  # the whole pipeline's FLOPs budget, on stage rows
    ("kept", pa.string()),  # on the decision row: 'distilled' or 'labels-only'
    ("message", pa.string()),  # on the decision row: what happened, in words
    ("gpu", pa.float64()),  # on trial rows: the share of a GPU the trial held
    ("device", pa.string()),  # on trial rows: where it trained
]


def write_selection(rows: list[dict], path: "str | Path | Location") -> "Path | str":
    schema = pa.schema(SELECTION_COLUMNS)
    return write_table(pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema=schema),
                       path)


def read_selection(path: "str | Path | Location") -> list[dict]:
    location = Location(path)
    return read_table(location, ("kind", "candidate"), "a selection table").to_pylist() if location.is_file() else []
