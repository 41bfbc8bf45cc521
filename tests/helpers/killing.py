"""Run a `selkd` command in its own process (joined to the test's Ray) and stop it midway: SIGKILL (a crash),
or SIGINT / SIGTERM (Ctrl-C, a scheduler's stop), sent to its process group as a terminal or a container would."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import ray


@dataclass(frozen=True)
class Stopped:
    progress: int  # progress() after the process ended: what the stopped run left behind
    seconds: float  # from the signal to the process's exit
    returncode: int
    stderr: str
    pid: int = 0  # the command's process id
    family: tuple = ()  # (pid, start time, command line) of every process below the command when signalled


def stop_cli_midway(arguments: list[str], progress: Callable[[], int], at_least: int, signum: int = signal.SIGKILL,
                    timeout: float = 300, poll: float = 0.02, embedded: bool = False, to_group: bool = True) -> Stopped:
    """Start `selkd ARGUMENTS`, send `signum` to its process group (`to_group`, as `timeout`, systemd or
    Kubernetes send it) or to its process alone (as `kill PID`) once `progress()` reaches `at_least`, and wait
    for it to end. `embedded`: the command starts its own Ray (no RAY_ADDRESS), whose processes the signal to
    the group must not take down under the command."""
    if embedded:
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    else:
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        slots_free()
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "selkd_cli.main", *arguments], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                   preexec_fn=as_from_a_shell)
        deadline = time.time() + timeout
        while time.time() < deadline and progress() < at_least and process.poll() is None:
            time.sleep(poll)
        family = descendants(process.pid)
        sent = time.monotonic()
        try:
            (os.killpg if to_group else os.kill)(process.pid, signum)
            process.wait(timeout=60)
        except ProcessLookupError:
            pass
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        took = time.monotonic() - sent
        if not embedded:
            slots_free()  # the stopped driver's Ray Train workers may still be writing: let them go first
        stderr.seek(0)
        return Stopped(progress(), took, process.returncode, stderr.read(), process.pid, family)


def descendants(pid: int) -> tuple:
    """(pid, start time, command line) of every process below `pid`: an embedded Ray's GCS and raylet, and below
    the raylet its agents and workers (which rename themselves `ray::...`, so no command line names their
    session)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found.append((child.pid, child.create_time(), " ".join(child.cmdline())[:200]))
    return tuple(found)


def still_running(family: tuple, wait_s: float = 0.0) -> list[str]:
    """Command lines of those of `family` still running (the same processes: pid and start time) after waiting up
    to `wait_s` for them to end."""
    def left() -> list[str]:
        found = []
        for pid, started, _ in family:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(" ".join(process.cmdline())[:200])
        return found

    return left_after(left, wait_s)


def left_after(listing: Callable[[], list[str]], wait_s: float) -> list[str]:
    """What `listing()` still lists after waiting up to `wait_s` for it to become empty."""
    deadline = time.time() + wait_s
    while (left := listing()) and time.time() < deadline:
        time.sleep(0.2)
    return left


def as_from_a_shell() -> None:
    """In the child: SIGINT and SIGTERM as a shell starts a command (default, unblocked), not as this test
    process happens to hold them after the tests before it."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


HELD_SLOTS = 0  # CPU slots the suite holds for the whole session (its shared runner pool): never given back


def slots_free(timeout: float = 120) -> None:
    """Wait until the shared Ray has every CPU slot back (but those the suite holds for the session): a stopped
    driver's Ray Train actors and placement group are cleaned up asynchronously, and the next command's
    workers need their slots. If they never come back, the failure names what holds them."""
    import gc

    gc.collect()  # an actor handle this process dropped inside a reference cycle holds its actor until collected
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0) - HELD_SLOTS:
            return
        time.sleep(0.2)
    raise AssertionError(f"Ray's CPU slots never came back: {ray.available_resources()} of "
                         f"{ray.cluster_resources()}; held by: {slot_holders()}")


def slot_holders() -> list[str]:
    """What may hold slots in the shared Ray, from its GCS (the suite's Ray runs no dashboard, so no state API):
    its live actors (class, detached, pid, job) and its placement groups not removed (name, bundles, state)."""
    from ray._private import state

    try:
        actors = [f"actor {a['ActorClassName']}{' (detached)' if a['IsDetached'] else ''} pid {a['Pid']} job "
                  f"{a['JobID']}" for a in state.actors().values() if a["State"] != "DEAD"]
        groups = [f"placement group {g['name'] or g['placement_group_id'][:12]} {g['bundles']} {g['state']}"
                  for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
        return actors + groups + leased_by_the_raylet()
    except Exception as err:  # the listing is a diagnosis: it must not hide the failure it explains
        return [f"(listing failed: {type(err).__name__}: {err})"]


def leased_by_the_raylet() -> list[str]:
    """What the raylet itself says holds resources (its debug state, rewritten every few seconds): it once held
    a slot for an actor the GCS listed as dead."""
    from ray._private import worker

    state = Path(worker._global_node.get_session_dir_path()) / "logs" / "debug_state.txt"
    lines = state.read_text().splitlines() if state.is_file() else []
    return [f"raylet: {line.strip()[:200]}" for line in lines if "actor_or_task" in line and "CPU" in line]


def ray_processes_of(pid: int) -> list[psutil.Process]:
    """The processes of the Ray session a driver of that pid started (Ray names a session
    `session_<date>_<time>_<microseconds>_<pid>`, and every process of it carries the name in its command line),
    found whether the driver still runs or not."""
    session = re.compile(rf"session_\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_{pid}\b")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if session.search(" ".join(process.info["cmdline"] or [])):
                found.append(process)
    return found


def ray_processes_started_by(pid: int, wait_s: float = 0.0) -> list[str]:
    """Command lines of those processes still running after waiting up to `wait_s` for them to end."""
    return left_after(lambda: [" ".join(process.info["cmdline"] or [])[:200] for process in ray_processes_of(pid)],
                      wait_s)
