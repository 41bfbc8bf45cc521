"""Table schemas derived from the row records of `selkd_ray.rows`, in one place: a field's Python type decides
its Arrow type (a field's `column` metadata where the type alone does not)."""
from __future__ import annotations

import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..rows import as_row
from .atomic import write_table
from .fs import Location

ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), "int32": pa.int32()}


def arrow_type(hint: Any) -> pa.DataType:
    """The Arrow type of a record field's type hint: str, int, float, bool, optional ones, tuples of them."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        return pa.list_(ARROW[typing.get_args(hint)[0]])
    return ARROW[hint]


def schema_of(*kinds: type, expand: tuple[str, ...] = ()) -> pa.Schema:
    """The table schema of one or more row records (the union of their fields, in order); a field marked
    `expand` becomes one float column per name in `expand`."""
    columns: dict[str, pa.DataType] = {}
    for kind in kinds:
        hints = typing.get_type_hints(kind)
        for spec in fields(kind):
            prefix = spec.metadata.get("expand")
            if prefix is not None:
                columns.update({f"{prefix}{name}": pa.float64() for name in expand})
            elif spec.name not in columns:
                columns[spec.name] = ARROW[spec.metadata["column"]] if "column" in spec.metadata else \
                    arrow_type(hints[spec.name])
    return pa.schema(list(columns.items()))


def write_rows(records: list, schema: pa.Schema, path: "str | Path | Location") -> "Path | str":
    rows = [as_row(record) for record in records]
    return write_table(pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows],
                                            schema=schema), path)
