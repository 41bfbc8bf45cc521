"""Run as a script beside a driver that started an embedded Ray: when the driver dies without stopping its Ray
(a SIGKILL, the OOM killer), end what of that Ray is still running.

Why: Ray's GCS and raylet die with the driver (the kernel's parent-death signal), and the workers with the
raylet, but the raylet's two agents (dashboard, runtime env) first try to tell the driver that the raylet died,
through the GCS that is gone, and Ray waits 60 s for that call: they lingered a minute after every kill, holding
memory and ports a restarted command would want. This watcher keeps a list of the Ray processes (the ones
`ray.init` started and everything below them, refreshed every second while the driver lives) and, once the
driver is gone, sends SIGKILL to those of the list still running (the same pid and start time: never a reused
pid). It reads /proc only and imports nothing of ours or Ray's: it starts in milliseconds.

    python reaper.py DRIVER_PID ROOT_PID [ROOT_PID ...]
"""
from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5
REFRESH_S = 1.0


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children_of() -> dict[int, list[int]]:
    """Every process's children, from each one's parent pid."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(name))
    return children


def family(roots: list[int]) -> dict[int, str]:
    """The roots and all their descendants that are running: pid -> start time."""
    children, found, todo = children_of(), {}, list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or (started := start_time(pid)) is None:
            continue
        found[pid] = started
        todo.extend(children.get(pid, []))
    return found


def watch(driver: int, roots: list[int]) -> list[int]:
    """Wait for the driver to go; then kill what is left of the family last seen. The pids killed."""
    seen, refreshed = family(roots), time.monotonic()
    while os.getppid() == driver:
        time.sleep(POLL_S)
        if time.monotonic() - refreshed >= REFRESH_S:
            seen.update(family(roots))
            refreshed = time.monotonic()
    killed = []
    for pid, started in seen.items():
        if start_time(pid) == started:  # the same process, not a new one under a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


if __name__ == "__main__":
    watch(int(sys.argv[1]), [int(pid) for pid in sys.argv[2:]])
