"""Outputs on pyarrow filesystems: a file:// URI through a whole scan, and the non-local write path."""
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from selkd_ray.config import ScanConfig
from selkd_ray.io.atomic import read_table, write_table
from selkd_ray.io.cache import CacheKey, PredictionCache
from selkd_ray.io.fs import Location
from selkd_ray.records import Predictions
import numpy as np


def test_scan_writes_to_a_filesystem_uri(scan_here, tiny_zoo, target_task, tmp_path):
    uri = f"file://{tmp_path}/out"
    first = scan_here(tiny_zoo, target_task, uri, ScanConfig(scorers=("ot",), probe_per_class=5))
    assert (tmp_path / "out" / "scores.parquet").is_file() and first.ran == 3
    again = scan_here(tiny_zoo, target_task, uri, ScanConfig(scorers=("ot",), probe_per_class=5))
    assert (again.ran, again.cached) == (0, 3)
    assert pq.read_table(tmp_path / "out" / "scores.parquet").num_rows == 3


def test_non_local_filesystems_write_beside_then_move(tmp_path):
    """A SubTreeFileSystem is not the local one, so this takes the object-store path, on a real disk."""
    remote = Location.on(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "bucket/run", "mem://bucket/run")
    assert not remote.is_local
    written = write_table(pa.table({"x": [1, 2]}), remote / "t.parquet")
    assert written == "mem://bucket/run/t.parquet"
    assert read_table(remote / "t.parquet").column("x").to_pylist() == [1, 2]
    assert sorted(p.name for p in (tmp_path / "bucket" / "run").iterdir()) == ["t.parquet"]  # no staging left
    cache = PredictionCache(remote / "cache")
    predictions = Predictions(np.full((2, 3), 1 / 3, np.float32), np.ones((2, 4), np.float32), 1.5,
                              np.eye(3, 4, dtype=np.float32))
    key = CacheKey("t" * 64, "c" * 64, "p" * 64, "prep")
    cache.put(key, predictions)
    back = cache.get(key)
    assert np.array_equal(back.probs, predictions.probs) and np.array_equal(back.classifier, predictions.classifier)
    assert back.seconds == 1.5 and cache.get(CacheKey("u" * 64, "c" * 64, "p" * 64, "prep")) is None
