"""Probe predictions cached per (teacher hash, probe hash, preprocessing): a teacher never runs twice on a probe.

Classifier rows depend on the teacher alone, so they are cached once per teacher hash beside the predictions.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import UnreadableTable
from ..records import Predictions, ProbeSet, TeacherSpec
from .atomic import read_table, write_table
from .fs import Location


def rows_to_array(table: pa.Table, column: str) -> np.ndarray:
    return np.stack(table.column(column).to_numpy(zero_copy_only=False)).astype(np.float32)


def prediction_key(spec: TeacherSpec, images: ProbeSet) -> tuple[str, str, str]:
    """What keys a teacher's outputs on an image set: its content hash, the set's hash, its preprocessing."""
    return spec.content_hash, images.probe_hash, spec.preprocessing_key


class PredictionCache:
    """One small Parquet file per key, written atomically, so a killed scan loses nothing finished."""

    def __init__(self, root: "str | Path | Location") -> None:
        self.root = Location(root)

    def path(self, teacher_hash: str, probe_hash: str, preprocessing: str) -> Location:
        prep = hashlib.sha256(preprocessing.encode()).hexdigest()[:12]
        return self.root / f"{teacher_hash[:24]}-{probe_hash[:16]}-{prep}.parquet"

    def classifier_path(self, teacher_hash: str) -> Location:
        return self.root / "classifiers" / f"{teacher_hash[:24]}.parquet"

    def get(self, teacher_hash: str, probe_hash: str, preprocessing: str) -> Predictions | None:
        path = self.path(teacher_hash, probe_hash, preprocessing)
        if not path.is_file():
            return None
        try:  # an unreadable entry is a miss: recomputed and rewritten
            table = read_table(path)
            seconds = float((table.schema.metadata or {}).get(b"seconds", b"0"))
            classifier_path = self.classifier_path(teacher_hash)
            classifier = rows_to_array(read_table(classifier_path), "row") if classifier_path.is_file() else None
            return Predictions(rows_to_array(table, "probs"), rows_to_array(table, "features"), seconds, classifier)
        except (UnreadableTable, KeyError, ValueError):
            return None

    def put(self, teacher_hash: str, probe_hash: str, preprocessing: str, predictions: Predictions) -> "Path | str":
        """The classifier first, then the predictions: a predictions file means the entry is complete."""
        if predictions.classifier is not None and not self.readable(self.classifier_path(teacher_hash)):
            write_table(pa.table({"row": pa.array(list(predictions.classifier.astype(np.float32)))}),
                        self.classifier_path(teacher_hash))
        table = pa.table({"probs": pa.array(list(predictions.probs.astype(np.float32))),
                          "features": pa.array(list(predictions.features.astype(np.float32)))})
        table = table.replace_schema_metadata({"seconds": str(predictions.seconds)})
        return write_table(table, self.path(teacher_hash, probe_hash, preprocessing))

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        """Whether the entry would be served (an unreadable file is not: it is recomputed, and charged)."""
        return self.get(*key) is not None

    @staticmethod
    def readable(path: Location) -> bool:
        try:
            return path.is_file() and read_table(path) is not None
        except UnreadableTable:
            return False
