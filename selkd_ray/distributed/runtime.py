"""Connect to Ray: reuse a running one, join a cluster by address, or start an embedded local one."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading

import ray

from ..errors import SelkdError

# Keep an embedded Ray on this machine: no usage reports, no cloud probes, loopback only.
LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
             "HF_HUB_OFFLINE": "1",
             # Ray Train's controller polls workers every 2 s by default, which makes each per-epoch report
             # cost ~2 s on small jobs; an embedded Ray polls faster.
             "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
LOCAL_NODE_IP = os.environ.get("SELKD_NODE_IP", "127.0.0.2")


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast, in one line, when nothing listens at host:port (ray.init would retry for a long time)."""
    if address in ("auto", "local") or address.startswith(("ray://", "anyscale://")):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SelkdError(f"--address: '{address}' is not host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise SelkdError(f"--address: no Ray cluster answers at {address} ({err.strerror or err})") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure this process talks to Ray. Returns True when it started an embedded local instance."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    with own_sigterm_kept():
        if address:
            check_reachable(address)
            ray.init(address=address, log_to_driver=False, configure_logging=True, logging_level="WARNING")
            return False
        # address="local": always a new embedded instance, never a cluster `ray start` left recorded on disk
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP,
                 log_to_driver=False, configure_logging=True, logging_level="WARNING")
    return True


@contextlib.contextmanager
def own_sigterm_kept():
    """ray.init installs a native SIGTERM handler that aborts the process (exit -6, a stack dump): a caller's
    own Python handler (the CLI's, which stops cleanly) is put back after it."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def cpu_slots() -> int:
    return max(1, int(ray.available_resources().get("CPU", 1)))


def gpu_count() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


@ray.remote(num_gpus=1, num_cpus=0)
def cuda_visible() -> bool:
    """Whether torch sees CUDA on a node Ray schedules a GPU task on."""
    import torch

    return torch.cuda.is_available()


def check_gpu_workers(workers: int, timeout: float = 120.0) -> str:
    """Before a Ray Train run on `workers` GPUs: a one-line error when the cluster has fewer GPUs; a warning
    (the run then falls back to CPU workers) when a GPU node has no CUDA that torch can use; '' when fine."""
    declared = gpu_count()
    if declared < workers:
        raise SelkdError(f"--gpus: {workers} GPU worker(s) asked for, but the cluster has {declared} GPU(s)")
    try:
        usable = ray.get(cuda_visible.remote(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise SelkdError(f"--gpus: no GPU of the cluster became free within {timeout:.0f} s") from None
    if usable:
        return ""
    return (f"the cluster declares {declared} GPU(s) but torch sees no CUDA device on a GPU node: training on "
            f"{workers} CPU worker(s) instead")
