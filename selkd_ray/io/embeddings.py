"""Label-name embeddings cached in one Parquet table per text model: each name is embedded once, ever."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from .atomic import read_table, write_table
from .fs import Location


class EmbeddingCache:
    def __init__(self, root: "str | Path | Location", model_name: str) -> None:
        self.path = Location(root) / f"label-embeddings-{model_name}.parquet"

    def lookup(self, names: list[str], embed: Callable[[list[str]], np.ndarray]) -> dict[str, np.ndarray]:
        """Vectors for `names`, embedding (and caching) only the ones not seen before."""
        known: dict[str, np.ndarray] = {}
        if self.path.is_file():
            table = read_table(self.path)
            known = dict(zip(table.column("name").to_pylist(),
                             np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)))
        missing = sorted(set(names) - set(known))
        if missing:
            known.update(zip(missing, embed(missing)))
            write_table(pa.table({"name": list(known), "vector": [v.tolist() for v in known.values()]}), self.path)
        return {name: known[name] for name in names}
