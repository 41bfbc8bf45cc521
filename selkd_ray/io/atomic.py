"""Atomic Parquet writes: a reader sees the old file or the new one, never half of one.

On a local disk: write a temporary file beside the target and rename it over. On other pyarrow filesystems:
write beside, then move (an object store's move publishes the whole object at once).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UnreadableTable
from .fs import Location


@contextmanager
def naming(target: "str | Path") -> Iterator[None]:
    """A write the file system refuses names the file the user asked for: pyarrow's and Python's errors on a
    full disk name no file, and a read-only one names the staging file, which the user never asked for."""
    try:
        yield
    except OSError as err:
        if err.errno is None:
            raise
        raise OSError(err.errno, os.strerror(err.errno), str(target)) from None


def write_table(table: pa.Table, where: "str | Path | Location") -> "Path | str":
    location = Location(where)
    location.parent.mkdir()
    if location.is_local:
        with naming(location.path):
            fd, staging = tempfile.mkstemp(prefix=f".{location.name}.", suffix=".tmp", dir=location.parent.path)
            os.close(fd)
            try:
                pq.write_table(table, staging)
                os.replace(staging, location.path)
            finally:
                if os.path.exists(staging):
                    os.unlink(staging)
        return location.native()
    staging = location.parent / f".{location.name}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, staging.path, filesystem=location.fs)
    location.fs.move(staging.path, location.path)
    return location.native()


AFRESH = "move it aside (or delete it) and run again to start it afresh"


def read_table(where: "str | Path | Location", required: tuple[str, ...] = (), what: str = "") -> pa.Table:
    """The table at `where`; a file that is not readable Parquet, or lacks a `required` column (another
    tool's table where ours should be), is an UnreadableTable naming it."""
    location = Location(where)
    try:
        table = pq.read_table(location.path, filesystem=location.fs)
    except (pa.ArrowException, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UnreadableTable(f"{location.native()}: not a readable Parquet table ({reason}); {AFRESH}") from None
    missing = [name for name in required if name not in table.schema.names]
    if missing:
        raise UnreadableTable(f"{location.native()}: not {what} (no column '{missing[0]}'); {AFRESH}")
    return table
