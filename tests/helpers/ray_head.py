"""A real Ray head started with `ray start --head --block` on a loopback address, with its dashboard (the job
submission server), every port chosen free; stopped by ending its own process group (never `ray stop`,
which would take every Ray on the machine with it)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


PORTS = ("port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
         "ray-client-server-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port")


def free_ports(host: str, names: tuple[str, ...]) -> dict[str, int]:
    """One free port per name, all distinct: every socket stays bound until all are chosen."""
    probes = [socket.socket() for _ in names]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return {name: probe.getsockname()[1] for name, probe in zip(names, probes)}
    finally:
        for probe in probes:
            probe.close()


class HeadExited(RuntimeError):
    """`ray start` ended before its dashboard listened (a port taken between choosing and binding, say)."""


def wait_for(host: str, port: int, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise HeadExited(f"ray start exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens at {host}:{port} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_head(host: str, env: dict, num_cpus: int, timeout: float, log: Path) -> tuple[subprocess.Popen, dict]:
    """(the `ray start --head --block` process, its ports) once the dashboard listens."""
    ports = free_ports(host, PORTS)
    command = [RAY, "start", "--head", "--block", f"--node-ip-address={host}", f"--dashboard-host={host}",
               "--include-dashboard=true", f"--num-cpus={num_cpus}", "--disable-usage-stats",
               *(f"--{name}={port}" for name, port in ports.items())]
    with open(log, "w") as output:
        head = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:  # the job server answers once its dashboard listens, but hands a job only to a listening agent
        # (a submission before that is refused: "No available agent to submit job")
        for port in ("dashboard-port", "dashboard-agent-listen-port"):
            wait_for(host, ports[port], timeout, head, log)
    except BaseException:
        stop(head)
        raise
    return head, ports


def stop(head: subprocess.Popen) -> None:
    # The head's processes share its session; SIGKILL ends them at once (SIGTERM took ~30 s to drain).
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group is gone already
        pass
    head.wait()


@dataclass(frozen=True)
class Head:
    dashboard: str  # the dashboard's HTTP address: what `ray job submit --address` takes
    gcs: str  # host:port: what a driver's ray.init(address=...) takes


@contextmanager
def ray_head(host: str, env: dict, num_cpus: int = 2, timeout: float = 120):
    """Yields the Head's addresses. A head that exits at start
    (its ports are chosen free, then bound by ray: another process can take one between) is started once more
    on fresh ports; errors quote the head's output."""
    log = Path(tempfile.mkstemp(prefix="ray-head-", suffix=".log")[1])
    try:
        head, ports = start_head(host, env, num_cpus, timeout, log)
    except HeadExited:
        head, ports = start_head(host, env, num_cpus, timeout, log)
    try:
        yield Head(f"http://{host}:{ports['dashboard-port']}", f"{host}:{ports['port']}")
    finally:
        stop(head)
        log.unlink(missing_ok=True)
        recorded = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its address for later ray.init()s
        if recorded.is_file() and recorded.read_text().startswith(f"{host}:"):
            recorded.unlink()
