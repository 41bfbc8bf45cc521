"""Probe predictions cached per (teacher hash, probe hash, preprocessing): a teacher never runs twice on a probe."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..records import Predictions
from .atomic import read_table, write_table


class PredictionCache:
    """One small Parquet file per key, written atomically, so a killed scan loses nothing finished."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, teacher_hash: str, probe_hash: str, preprocessing: str) -> Path:
        prep = hashlib.sha256(preprocessing.encode()).hexdigest()[:12]
        return self.root / f"{teacher_hash[:24]}-{probe_hash[:16]}-{prep}.parquet"

    def get(self, teacher_hash: str, probe_hash: str, preprocessing: str) -> Predictions | None:
        path = self.path(teacher_hash, probe_hash, preprocessing)
        if not path.is_file():
            return None
        table = read_table(path)
        probs = np.stack(table.column("probs").to_numpy(zero_copy_only=False)).astype(np.float32)
        features = np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
        seconds = float((table.schema.metadata or {}).get(b"seconds", b"0"))
        return Predictions(probs, features, seconds)

    def put(self, teacher_hash: str, probe_hash: str, preprocessing: str, predictions: Predictions) -> Path:
        table = pa.table({"probs": pa.array(list(predictions.probs.astype(np.float32))),
                          "features": pa.array(list(predictions.features.astype(np.float32)))})
        table = table.replace_schema_metadata({"seconds": str(predictions.seconds)})
        return write_table(table, self.path(teacher_hash, probe_hash, preprocessing))

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return self.path(*key).is_file()
