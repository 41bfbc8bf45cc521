"""The index job: a zoo's teachers described once (hash, config, FLOPs) into its Parquet catalogue."""
from __future__ import annotations

from pathlib import Path

from ..address import check_address
from ..io.catalogue import read_catalogue, write_catalogue
from ..io.fs import Location
from ..progress import Progress, Step, quiet
from ..records import TeacherSpec
from ..zoo.index import index_folders, index_here, require_zoo

PARALLEL_INDEX_FROM = 16  # new or changed teachers from which indexing runs on Ray Data rather than here


def index_zoo(zoo_dir: str | Path, catalogue_path: str | Path | Location | None = None,
              address: str | None = None, progress: Progress = quiet) -> tuple[list[TeacherSpec], Path | str]:
    """Index `zoo_dir` into a Parquet catalogue (default: ZOO_DIR/catalogue.parquet), incrementally.

    A new catalogue elsewhere (a scan's output) starts from the zoo's own catalogue when there is one, so a
    zoo indexed once (`selkd zoo index`) is not hashed and described again by every new scan. New or changed
    teachers are indexed on Ray Data across the cluster (at `address`, else the running or an embedded Ray)
    when there are many of them; a few are indexed here, where a Ray start or task round trip costs more."""
    check_address(address)
    zoo_dir = Path(zoo_dir)
    own = Location(zoo_dir / "catalogue.parquet")
    catalogue = Location(catalogue_path or own)
    seed = catalogue if catalogue.is_file() else own if own.is_file() else None
    previous = read_catalogue(seed) if seed is not None else None
    require_zoo(zoo_dir)
    entries = index_folders(zoo_dir, previous, parallel_indexer(address, progress))
    return [spec for spec, _, _ in entries], write_catalogue(entries, catalogue)


def parallel_indexer(address: str | None, progress: Progress):
    """Index many teachers on Ray Data (connecting to Ray as every command does), few of them here."""
    def index_many(folders):
        if len(folders) < PARALLEL_INDEX_FROM:
            return index_here(folders)
        from ..distributed.indexing import index_in_tasks
        from ..distributed.runtime import connect

        connect(address)
        return index_in_tasks(folders, lambda done, total: progress(Step(
            "zoo", done, total, f"[zoo] indexed {done}/{total} new or changed teachers", f"{done}/{total}", False)))
    return index_many
