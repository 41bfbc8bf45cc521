"""One writer at a time per output folder (a scan, or a whole selection): an exclusive lock file, released when
the process ends however it ends."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import SelkdError
from .fs import Location

LOCK_FILE = ".scan.lock"


HELD: dict[Path, int] = {}  # lock files this process holds -> how deeply (a selection's scan re-enters its lock)


class ScanLock:
    """flock on OUT/.scan.lock: a second scan or selection on the same output fails at once with a clear
    message, and a killed one leaves no stale lock (the kernel drops it with the process). Re-entrant within
    a process: `select` holds it from its scan to its final stage, and the scan inside takes it again.

    On a remote filesystem (s3://, gs://) there is no lock to take; every write there publishes a whole object
    atomically, so concurrent scans cannot corrupt files, though the last one's scores.parquet wins."""

    def __init__(self, out_dir: "str | Path | Location") -> None:
        location = Location(out_dir)
        self.path = (Path(location.path) / LOCK_FILE).resolve() if location.is_local else None
        self.handle = None

    def __enter__(self) -> "ScanLock":
        if self.path is None:
            return self
        if HELD.get(self.path):
            HELD[self.path] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SelkdError(f"{self.path.parent}: another scan or selection is writing this output ({holder}); "
                             "wait for it or use another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self.handle, HELD[self.path] = handle, 1
        return self

    def __exit__(self, *exc) -> None:
        if self.path is None or not HELD.get(self.path):
            return
        HELD[self.path] -= 1
        if self.handle is not None:  # the outermost holder lets go
            del HELD[self.path]
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
