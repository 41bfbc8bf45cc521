"""The zoo catalogue: one Parquet table of teacher specs, one row per teacher folder."""
from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pyarrow as pa

from ..records import TeacherSpec
from .atomic import read_table, write_table
from .fs import Location
from .schema import schema_of

# every TeacherSpec field, and the weights file's size and mtime (unchanged files are not hashed again)
CATALOGUE_SCHEMA = pa.schema([*schema_of(TeacherSpec), ("file_size", pa.int64()), ("file_mtime_ns", pa.int64())])


def write_catalogue(entries: list[tuple[TeacherSpec, int, int]], path: "str | Path | Location") -> "Path | str":
    """entries: (spec, weights file size, weights file mtime in ns)."""
    rows = [{**asdict(spec), "file_size": size, "file_mtime_ns": mtime} for spec, size, mtime in entries]
    return write_table(pa.Table.from_pylist(rows, schema=CATALOGUE_SCHEMA), path)


def read_catalogue(path: "str | Path | Location") -> list[tuple[TeacherSpec, int, int]]:
    """The catalogue's entries; one written before a column existed has none (every teacher is indexed anew)."""
    names = {f.name for f in fields(TeacherSpec)}
    table = read_table(path, ("teacher_id", "path", "content_hash"), "a catalogue")
    if set(CATALOGUE_SCHEMA.names) - set(table.schema.names):
        return []
    entries = []
    for row in table.to_pylist():
        spec = {k: v for k, v in row.items() if k in names}
        for key in ("label_names", "input_size", "mean", "std"):
            spec[key] = tuple(spec[key] or ())
        entries.append((TeacherSpec(**spec), row["file_size"], row["file_mtime_ns"]))
    return entries
