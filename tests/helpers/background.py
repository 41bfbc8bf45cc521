"""Self-contained commands run beside the suite: each bench script's `--quick` that starts its own Ray in fresh
processes (its figures are about fresh processes, so it cannot share the suite's Ray).

Why beside it: the suite leaves about a third of two cores idle (it waits on process starts, signals, clusters
and timeouts). A job marked `@pytest.mark.background(name, *argv)` starts once the suite's shared fixtures are
up (`begin`: the tiny zoo's training and Ray's start run faster alone), at the lowest CPU priority (SCHED_IDLE:
it takes the CPU no test wants, and a test that wants it gets it back at once), one job after another so they
do not crowd each other; its test runs at the end of the session and waits for it, then checks what it printed.
Run alone, such a test simply starts its job and waits.

A test's own command that needs nothing of the suite's Ray (a command under strace with its own embedded Ray, a
cluster of its own) may run beside it too, in a second lane (`lane="tests"`: beside the bench jobs, as these
mostly wait on process starts): `{zoo}` and `{task}` in its arguments are the suite's tiny zoo and task file,
which their fixtures `provide` when they are made (the test asks for the fixtures too, so run alone it has them)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Job:
    """One command, its own output folder (`{out}` in its arguments), and what it printed once done."""

    def __init__(self, name: str, argv: tuple[str, ...]) -> None:
        self.name, self.out = name, Path(tempfile.mkdtemp(prefix=f"selkd-{name}-"))
        self.argv = [sys.executable, *(arg.replace("{out}", str(self.out)) for arg in argv)]
        self.done = threading.Event()
        self.process: subprocess.Popen | None = None
        self.result: subprocess.CompletedProcess | None = None
        self.span: tuple[float, float] | None = None  # (started, ended), monotonic: the summary's line
        self.cpu_s: float | None = None  # CPU-seconds of the command and its Ray
        self.stopped = False

    def run(self, timeout: float) -> None:
        started = time.monotonic()
        try:
            self.argv = [provided(earlier_outputs(arg)) for arg in self.argv]
        except RuntimeError as err:
            self.result = subprocess.CompletedProcess(self.argv, 2, "", str(err))
            self.done.set()
            return
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own Ray
        # One intra-op thread (torch, OpenMP, BLAS), as Ray gives its workers: beside the suite a second thread
        # only spins waiting for a core the suite holds (the README demo burnt 248 s of CPU with two, 90 s with
        # one; alone, one trains its zoo as fast as two). The suite's own tests keep torch's default: their
        # tiny zoo's exact weights, and so the premises some tests read off them, depend on the thread count.
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            lowest = ["chrt", "--idle", "0"] if shutil.which("chrt") else ["nice", "-n", "19"]
            self.process = subprocess.Popen([*lowest, *self.argv], stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                                            start_new_session=True)
            stdout, stderr, timed_out = self.wait(timeout)
            if timed_out:
                stderr += f"\ntimed out after {timeout:.0f} s"
            self.result = subprocess.CompletedProcess(self.argv, self.process.returncode, stdout, stderr)
        finally:
            self.span = (started, time.monotonic())
            self.done.set()

    def wait(self, timeout: float) -> tuple[str, str, bool]:
        """(stdout, stderr, timed out), the command reaped here (not by Popen, so its pipes are read by threads of
        their own), and its CPU-seconds with its Ray's (`sample_tree_cpu`) for the summary's line (issue 43:
        CPU per job first)."""
        chunks: dict[str, list[str]] = {"out": [], "err": []}
        readers = [threading.Thread(target=lambda pipe, key: chunks[key].append(pipe.read()), args=(pipe, key),
                                    daemon=True) for pipe, key in ((self.process.stdout, "out"),
                                                                    (self.process.stderr, "err"))]
        for reader in readers:
            reader.start()
        timer = threading.Timer(timeout, self.stop)
        timer.start()
        tree_cpu: dict[int, float] = {}
        ended = threading.Event()
        sampler = threading.Thread(target=sample_tree_cpu, args=(self.process.pid, tree_cpu, ended),
                                   daemon=True)
        sampler.start()
        try:
            _, status = os.waitpid(self.process.pid, 0)
        finally:
            timer.cancel()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        ended.set()
        sampler.join()
        self.cpu_s = sum(tree_cpu.values())
        for reader in readers:
            reader.join()
        return "".join(chunks["out"]), "".join(chunks["err"]), self.stopped

    def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.stopped = True
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its Ray dies with its driver (Ray's fate sharing)
            except ProcessLookupError:
                pass  # it ended on its own before it could be killed


def sample_tree_cpu(root: int, seen: dict[int, float], done: threading.Event, every_s: float = 0.5) -> None:
    """CPU-seconds of the command `root` and of every process below it (its Ray: raylet, GCS, workers; a test's
    own commands, started in sessions of their own, and theirs), read from /proc every `every_s` until `done`:
    a process's last reading counts (one that lives less than `every_s` is missed). Ray's processes are not
    reaped by the command, so its rusage would see only the driver; Ray's workers leave its process group, and
    a test's commands its session, so neither of those finds them either."""
    tick = os.sysconf("SC_CLK_TCK")
    while not done.wait(every_s):
        processes = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:  # after the name: state, ppid, pgrp, session, ... utime (12th), stime (13th)
                fields = open(f"/proc/{entry.name}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            processes[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        members, grown = {root} | set(seen), True
        while grown:  # down the tree: a known process's children, theirs, ...
            below = {pid for pid, (ppid, _) in processes.items() if ppid in members} - members
            members, grown = members | below, bool(below)
        for pid in members & processes.keys():
            seen[pid] = processes[pid][1]


def earlier_outputs(arg: str) -> str:
    """`{out:NAME}` in an argument: the output folder of the job NAME, queued before this one (and so finished
    before it starts: the jobs run one after another), e.g. the README demo's zoo for a bench that reads it."""
    for name, job in list(JOBS.items()):
        if f"{{out:{name}}}" in arg:
            job.done.wait()
            arg = arg.replace(f"{{out:{name}}}", str(job.out))
    if "{out:" in arg:
        raise RuntimeError(f"{arg}: names a job not queued before this one (mark it `after=`)")
    return arg


def provided(arg: str, wait_s: float = 900) -> str:
    """`{zoo}`, `{task}` in an argument: what the suite's fixture of that name made (waiting until it is made)."""
    for key, ready in READY.items():
        if f"{{{key}}}" in arg:
            if not ready.wait(wait_s):
                raise RuntimeError(f"{arg}: no test made the suite's {key} in {wait_s:.0f} s")
            arg = arg.replace(f"{{{key}}}", str(PROVIDED[key]))
    return arg


def provide(key: str, value: Path) -> None:
    """A shared fixture's result, for the jobs whose arguments name it (`{key}`)."""
    PROVIDED[key] = value
    READY[key].set()


PROVIDED: dict[str, Path] = {}
READY = {"zoo": threading.Event(), "task": threading.Event()}
JOBS: dict[str, Job] = {}
BEGUN = threading.Event()  # set once the suite's shared fixtures are up (or when nothing else will set it)


def begin() -> None:
    BEGUN.set()


def start_all(jobs: dict[str, tuple[str, ...]], lanes: dict[str, str] | None = None, timeout: float = 1500,
              wait_s: float = 300) -> None:
    """Run the jobs of each lane (`lanes`: job name -> lane, "bench" unless said) one after another in a thread
    of its own, from `begin()` on (or after `wait_s`)."""
    queues: dict[str, list[Job]] = {}
    for name, argv in jobs.items():
        queues.setdefault((lanes or {}).get(name, "bench"), []).append(JOBS.setdefault(name, Job(name, argv)))

    def run_all(queue: list[Job]) -> None:
        BEGUN.wait(wait_s)
        for job in queue:
            job.run(timeout)

    for lane, queue in queues.items():
        threading.Thread(target=run_all, args=(queue,), daemon=True, name=f"background-{lane}").start()


def finished(name: str, argv: tuple[str, ...], timeout: float = 1500) -> tuple[subprocess.CompletedProcess, Path]:
    """(what the job printed, its output folder), waiting for it; a job nobody started is run now."""
    if name not in JOBS:
        JOBS[name] = Job(name, argv)
        JOBS[name].run(timeout)
    job = JOBS[name]
    job.done.wait()
    return job.result, job.out


def timings(session_start: float) -> list[str]:
    """A line per job that ran: when it started and ended after the session's start, and how long it took (what
    the suite's own --durations cannot show: these run beside it)."""
    return [f"{job.span[0] - session_start:6.0f} s -> {job.span[1] - session_start:6.0f} s  "
            f"({job.span[1] - job.span[0]:5.0f} s, {job.cpu_s or 0:5.0f} CPU-s)  {name}"
            for name, job in JOBS.items() if job.span]


def stop_all() -> None:
    """At the session's end: stop what still runs (its test was deselected or failed early), drop the folders."""
    for job in JOBS.values():
        job.stop()
        shutil.rmtree(job.out, ignore_errors=True)


def cpu_seconds() -> float:
    """CPU-seconds of every job that ran: the machine's less these are the suite's own tests'."""
    return sum(job.cpu_s or 0 for job in JOBS.values())
