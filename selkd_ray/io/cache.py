"""Probe predictions cached per key (teacher, image set, preprocessing): a teacher never runs twice on a probe.

Every entry carries its own key and a checksum of its arrays in the Parquet metadata, checked on read: a file
that is unreadable, truncated, edited, or belongs to another key (copied or swapped in by hand) is a miss,
recomputed and rewritten, and counted in `rejected` so the summary can say so. Classifier rows depend on the
teacher alone, so they are cached once per teacher beside the predictions, keyed and checked the same way.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import UnreadableTable
from ..records import Predictions, ProbeSet, TeacherSpec
from .atomic import read_table, write_table
from .fs import Location

FORMAT = "selkd-cache-1"


@dataclass(frozen=True)
class CacheKey:
    """Everything that decides a teacher's outputs on an image set, and what they mean."""

    teacher_hash: str  # the weights' content hash
    teacher_config: str  # architecture and label names (the same weights under other names mean other things)
    images_hash: str  # the probe's (or student image set's) content hash
    preprocessing: str  # how images become the teacher's input

    def stem(self) -> str:
        digest = hashlib.sha256("|".join((self.teacher_config, self.preprocessing)).encode()).hexdigest()[:12]
        return f"{self.teacher_hash[:24]}-{self.images_hash[:16]}-{digest}"

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, **asdict(self)}

    def classifier_metadata(self) -> dict[str, str]:
        """Classifier rows depend on the weights alone."""
        return {"format": FORMAT, "teacher_hash": self.teacher_hash}


def prediction_key(spec: TeacherSpec, images: ProbeSet) -> CacheKey:
    """The one key of a teacher's outputs on an image set (scan, teacher outputs and the selection use it)."""
    return CacheKey(spec.content_hash, spec.config_hash, images.probe_hash, spec.preprocessing_key)


def rows_to_array(table: pa.Table, column: str) -> np.ndarray:
    return np.stack(table.column(column).to_numpy(zero_copy_only=False)).astype(np.float32)


def checksum(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array, np.float32)
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class Rejected(ValueError):
    """A cache file that exists but is not this key's entry."""


BAD_ENTRY = (UnreadableTable, Rejected, KeyError, ValueError)  # what makes an existing file a miss


class PredictionCache:
    """One small Parquet file per key, written atomically, so a killed scan loses nothing finished."""

    def __init__(self, root: "str | Path | Location") -> None:
        self.root = Location(root)
        self.rejected: list[str] = []  # "FILE (why)" for each entry found bad and treated as a miss

    def path(self, key: CacheKey) -> Location:
        return self.root / f"{key.stem()}.parquet"

    def classifier_path(self, key: CacheKey) -> Location:
        return self.root / "classifiers" / f"{key.teacher_hash[:24]}.parquet"

    def get(self, key: CacheKey) -> Predictions | None:
        """The entry, or None: absent, or bad in any of its files (the predictions or the teacher's classifier
        rows), so the runner computes it again and both are rewritten; a bad file is listed in `rejected`."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            try:
                table, (probs, features) = checked(path, key.metadata(), ("probs", "features"))
            except BAD_ENTRY as err:
                raise Rejected(err, path.native()) from None
            seconds = float((table.schema.metadata or {}).get(b"seconds", b"0"))
            classifier = self.classifier(key, strict=True)
        except Rejected as err:
            self.rejected.append(f"{err.args[1]} ({reason(err.args[0])})")
            return None
        return Predictions(probs, features, seconds, classifier)

    def classifier(self, key: CacheKey, strict: bool = False) -> np.ndarray | None:
        """The teacher's classifier rows, or None when absent; a bad file is None too (the runner gives them
        again), or, `strict`, raises Rejected naming it."""
        path = self.classifier_path(key)
        if not path.is_file():
            return None
        try:
            return checked(path, key.classifier_metadata(), ("row",))[1][0]
        except BAD_ENTRY as err:
            if strict:
                raise Rejected(err, path.native()) from None
            return None

    def put(self, key: CacheKey, predictions: Predictions) -> "Path | str":
        """The classifier first, then the predictions: a predictions file means the entry is complete."""
        if predictions.classifier is not None and self.classifier(key) is None:
            rows = predictions.classifier.astype(np.float32)
            write_table(stamped(pa.table({"row": pa.array(list(rows))}), key.classifier_metadata(), rows),
                        self.classifier_path(key))
        probs, features = predictions.probs.astype(np.float32), predictions.features.astype(np.float32)
        table = pa.table({"probs": pa.array(list(probs)), "features": pa.array(list(features))})
        table = stamped(table, {**key.metadata(), "seconds": str(predictions.seconds)}, probs, features)
        return write_table(table, self.path(key))

    def __contains__(self, key: CacheKey) -> bool:
        """Whether the entry would be served (a bad file is not: it is recomputed, and charged)."""
        path = self.path(key)
        if not path.is_file():
            return False
        try:
            checked(path, key.metadata(), ("probs", "features"))
            self.classifier(key, strict=True)
            return True
        except (Rejected, *BAD_ENTRY):
            return False


def stamped(table: pa.Table, fields: dict[str, str], *arrays: np.ndarray) -> pa.Table:
    return table.replace_schema_metadata({**fields, "checksum": checksum(*arrays)})


def checked(path: Location, expected: dict[str, str], columns: tuple[str, ...]) -> tuple[pa.Table, list[np.ndarray]]:
    """The table at `path` and its `columns` as arrays, if its metadata holds `expected` and the arrays match
    their checksum (the arrays are made once, for the check and for the caller)."""
    table = read_table(path)
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    wrong = [name for name, value in expected.items() if metadata.get(name) != value]
    if wrong:
        raise Rejected(f"its {', '.join(wrong)} is not this entry's" if "format" not in wrong else
                       "written without a key (an older cache, or not by selkd)")
    arrays = [rows_to_array(table, column) for column in columns]
    if metadata.get("checksum") != checksum(*arrays):
        raise Rejected("its contents do not match their checksum")
    return table, arrays


def reason(err: Exception) -> str:
    return "not a readable Parquet table" if isinstance(err, UnreadableTable) else str(err) or type(err).__name__
