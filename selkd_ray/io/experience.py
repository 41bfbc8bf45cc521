"""The experience table: a folder of Parquet parts, one per selection's race (`part-KEY.parquet`).

Appending never rewrites what is there: two selections appending at once each write their own part, atomically
(io/atomic.py), and a selection started again rewrites its own part with the same race's rows, so an outcome is
never counted twice. A folder on any pyarrow filesystem works (an object store's move publishes a part whole),
so a team can point every selection at one shared location.
"""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow.fs as pafs

from ..errors import SelkdError
from ..rows import ExperienceRow, from_row
from .atomic import read_table
from .fs import Location
from .schema import schema_of, write_rows

REQUIRED = ("task_hash", "teacher_id", "teacher_hash", "outcome")
PREFIX = "rank_"


def append_experience(rows: list[ExperienceRow], where: "str | Path | Location", key: str) -> "Path | str | None":
    """Write one race's outcomes as the folder's part `key` (the same race again: the same part, rewritten)."""
    if not rows:
        return None
    scorers = tuple(sorted({name for row in rows for name in row.scores}))
    return write_rows(rows, schema_of(ExperienceRow, expand=scorers), Location(where) / f"part-{key}.parquet")


def experience_parts(where: "str | Path | Location") -> list[Location]:
    """The folder's parts, in name order; [] where the folder does not exist yet."""
    location = Location(where)
    found = location.fs.get_file_info(pafs.FileSelector(location.path, allow_not_found=True))
    return sorted((location.child(info.path) for info in found
                   if info.type == pafs.FileType.File and info.base_name.startswith("part-")
                   and info.base_name.endswith(".parquet")), key=lambda part: part.name)


def read_experience(where: "str | Path | Location", known_scorers: set[str] | None = None,
                    flag: str | None = None) -> list[ExperienceRow]:
    """Every outcome of the folder. A part that is not ours, lacks a column, holds a NaN outcome or ranks a
    scorer not in `known_scorers` is one line naming the file and the field; no part is changed by reading.
    `flag`: the folder must exist (a command that only reads it: a mistyped path is not an empty table)."""
    if flag is not None and not Location(where).is_dir():
        raise SelkdError(f"{flag}: {Location(where)} is not a folder; expected the experience folder a selection "
                         "wrote (its OUT/experience, or the --experience it was given)")
    rows = []
    for part in experience_parts(where):
        table = read_table(part, REQUIRED, "an experience table")
        for column in table.schema.names:
            if column.startswith(PREFIX) and known_scorers is not None and column[len(PREFIX):] not in known_scorers:
                raise SelkdError(f"{part.native()}: column '{column}' ranks a scorer this selkd-ray does not know "
                                 f"('{column[len(PREFIX):]}')")
        for index, row in enumerate(table.to_pylist()):
            outcome = row.get("outcome")
            if not isinstance(outcome, (int, float)) or not math.isfinite(outcome):
                raise SelkdError(f"{part.native()}: outcome at row {index} is {outcome!r}; expected a finite "
                                 "accuracy difference")
            rows.append(from_row(ExperienceRow, row))
    return rows
