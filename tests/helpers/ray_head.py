"""A real Ray head started with `ray start --head --block` on a loopback address, with its dashboard (the job
submission server), every port chosen free; stopped by ending its own process group (never `ray stop`,
which would take every Ray on the machine with it)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for(host: str, port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens at {host}:{port} after {timeout:.0f} s")


@contextmanager
def ray_head(host: str, env: dict, num_cpus: int = 2, timeout: float = 120):
    """Yields the dashboard's HTTP address (what `ray job submit --address` takes)."""
    ports = {name: free_port(host) for name in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                                "dashboard-agent-grpc-port", "metrics-export-port",
                                                "ray-client-server-port", "runtime-env-agent-port",
                                                "node-manager-port", "object-manager-port")}
    command = [RAY, "start", "--head", "--block", f"--node-ip-address={host}", f"--dashboard-host={host}",
               "--include-dashboard=true", f"--num-cpus={num_cpus}", "--disable-usage-stats",
               *(f"--{name}={port}" for name, port in ports.items())]
    head = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(host, ports["dashboard-port"], timeout)
        yield f"http://{host}:{ports['dashboard-port']}"
    finally:
        # The head's processes share its session; SIGKILL ends them at once (SIGTERM took ~30 s to drain).
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        recorded = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its address for later ray.init()s
        if recorded.is_file() and recorded.read_text().startswith(f"{host}:"):
            recorded.unlink()
