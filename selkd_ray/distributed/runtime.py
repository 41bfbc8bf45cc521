"""Connect to Ray: reuse a running one, join a cluster by address, or start an embedded local one."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import ray

from ..address import check_reachable
from ..errors import SelkdError

# Keep an embedded Ray on this machine: no usage reports, no cloud probes, loopback only.
LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
             "HF_HUB_OFFLINE": "1",
             # Ray Train's controller polls workers every 2 s by default, which makes each per-epoch report
             # cost ~2 s on small jobs; an embedded Ray polls faster.
             "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
# An embedded Ray is one node on this machine, which nothing drains for preemption: Ray Train's preemption
# watcher (an actor process per run, a second of CPU to start) has nothing to watch there. Clusters keep it.
EMBEDDED_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
LOCAL_NODE_IP = os.environ.get("SELKD_NODE_IP", "127.0.0.1")
RAY_LINES = "SELKD_RAY_LOGS"  # "1": Ray's own log lines on the terminal too (`selkd --verbose`)


def ray_lines_shown() -> bool:
    return os.environ.get(RAY_LINES) == "1"


CPP_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] \S+\.(cc|h):\d+: ")  # Ray's C++ log format


def ray_lines_off_terminal() -> None:
    """Keep Ray's internal lines off the user's terminal: its C++ core logs straight to the driver's stderr
    (e.g. `core_worker.cc: ... has constructor arguments in the object store`, at error level though nothing
    failed), and the driver prints every raylet message it hears of (`(raylet) WARNING: 8 PYTHON worker
    processes ...`) on stdout, where it would break `--json`. The C++ components then log fatal errors only
    (RAY_BACKEND_LOG_LEVEL, read as each starts, so an embedded Ray's own processes too; a real failure still
    reaches us as a Python exception), and raylet messages are not relayed. `selkd --verbose`
    (SELKD_RAY_LOGS=1) leaves Ray as it is, for when Ray itself needs looking into."""
    if ray_lines_shown():
        return
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    import ray._private.worker as ray_worker

    shown = ray_worker.print_to_stdstream
    if getattr(shown, "selkd_filtered", False):
        return

    def without_raylet(data, *args, **kwargs):
        if data.get("pid") == "raylet":
            return None
        return shown(data, *args, **kwargs)

    without_raylet.selkd_filtered = True
    ray_worker.print_to_stdstream = without_raylet


@contextlib.contextmanager
def cpp_lines_dropped():
    """Around ray.init: the driver's C++ logger announces the level it read from RAY_BACKEND_LOG_LEVEL on
    stderr, before any setting can silence it. What the driver writes to stderr meanwhile is caught and
    written again, less lines in Ray's C++ log format."""
    if ray_lines_shown():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if not CPP_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure this process talks to Ray. Returns True when it started an embedded local instance."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    ray_lines_off_terminal()
    with own_sigterm_kept(), cpp_lines_dropped(), ray_processes_in_their_own_group(), embedded_node_params():
        if address:
            check_reachable(address)
            join_cluster(address)
            return False
        # Ray turns token authentication on for a new local cluster (the token in ~/.ray/auth_token, made on
        # first use), with a warning on every start that says so; the README says it once instead. (Setting
        # RAY_AUTH_MODE here would not do: Ray reads it once, when it is imported.)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        for key, value in EMBEDDED_ENV.items():
            os.environ.setdefault(key, value)
        # address="local": always a new embedded instance, never a cluster `ray start` left recorded on disk
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP,
                 log_to_driver=False, configure_logging=True, logging_level="WARNING")
    watch_for_a_killed_driver()
    STARTED_HERE.add(ray.get_runtime_context().gcs_address)
    return True


STARTED_HERE: set[str] = set()  # the GCS addresses of the Rays this process started (embedded: they end with it)


def started_here() -> bool:
    """Whether the Ray this process talks to is one it started (an embedded instance), not a cluster's."""
    return ray.is_initialized() and ray.get_runtime_context().gcs_address in STARTED_HERE


REAPERS: list = []  # the watchers started here (kept, so that no Popen is collected while its process runs)


def watch_for_a_killed_driver() -> None:
    """Start `reaper.py` beside this driver: it ends what is left of the embedded Ray if the driver is killed
    (its agents lingered a minute otherwise). In a session of its own, so a signal to the command's group
    leaves it to do that."""
    if sys.platform == "win32":
        return
    node = ray._private.worker._global_node
    roots = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
    script = Path(__file__).with_name("reaper.py")
    REAPERS.append(subprocess.Popen([sys.executable, "-I", str(script), str(os.getpid()), *map(str, roots)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True))


def join_cluster(address: str) -> None:
    """ray.init against a running cluster; a cluster that refuses this driver (token authentication: no token,
    or another cluster's) is one line saying where the token comes from."""
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, log_to_driver=False, configure_logging=True, logging_level="WARNING")
    except (ConnectionError, AuthenticationError) as err:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise SelkdError(
            f"--address: the Ray cluster at {address} did not accept this driver ({type(err).__name__}; "
            f"RAY_AUTH_MODE is {mode}); a cluster with token authentication needs RAY_AUTH_MODE=token and its "
            "token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (see cluster/README.md)") from None


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


@contextlib.contextmanager
def embedded_node_params():
    """Around ray.init, what ray.init has no argument for (`ray start` has both):
    - the dashboard agent serves HTTP on a port the system picks, not on Ray's fixed 52365. With another Ray on
      the machine (a second `selkd` command, a cluster node, a notebook's Ray) the agent retried 52365 for 3.4 s
      and the node registered only after it gave up: each such command started ~4.5 s later (ray-project/ray
      #34886). Job submission and the dashboard read the agent's port from the node's record, whatever it is.
    - no log monitor: it tails the workers' log files to print them on the driver's terminal, which an
      embedded Ray never does (`log_to_driver=False`): a process and a second of CPU per start, for nothing."""
    import ray._private.parameter as parameter

    plain = parameter.RayParams

    class EmbeddedNodeParams(plain):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", 0)
            kwargs.setdefault("include_log_monitor", False)
            super().__init__(*args, **kwargs)

    parameter.RayParams = EmbeddedNodeParams
    try:
        yield
    finally:
        parameter.RayParams = plain


@contextlib.contextmanager
def ray_processes_in_their_own_group():
    """Around ray.init: the processes an embedded Ray starts (GCS, raylet, and through the raylet every worker)
    lead a process group of their own, as Ray already does on Windows. Why: `timeout`, `kill -TERM -PGID`,
    systemd and Kubernetes signal the command's whole process group; Ray's processes then died at once beside
    the driver, which hung 60 s on the lost GCS instead of stopping in seconds. The driver stops them itself
    (ray.shutdown), and they still die with it where it is killed (Ray's kernel fate-sharing, PR_SET_PDEATHSIG)."""
    import ray._private.services as services
    from ray._private.utils import detect_fate_sharing_support

    plain = services.ConsolePopen
    if sys.platform == "win32" or not detect_fate_sharing_support():
        yield
        return

    class OwnGroupPopen(plain):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = plain


def cpu_slots() -> int:
    return max(1, int(ray.available_resources().get("CPU", 1)))


def gpu_count() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


@ray.remote(num_gpus=1, num_cpus=0)
def cuda_visible() -> bool:
    """Whether torch sees CUDA on a node Ray schedules a GPU task on."""
    import torch

    return torch.cuda.is_available()


def actor_options() -> tuple[int, dict]:
    """How many actors of a pool (runner actors, the teachers' outputs), and the resources each takes: a whole GPU, else one CPU slot."""
    gpus = gpu_count()
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return cpu_slots(), {"num_cpus": 1}


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


def quiet_data() -> None:
    """Ray Data's own progress bars, start and finish lines off: the CLI draws one bar for the whole step."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "execution finished" or "bars disabled" lines


def selkd_error_in(err: BaseException) -> SelkdError | None:
    """The one-line error a worker raised, inside Ray's wrapping (a Ray Train worker group's failures, a Ray
    Data task's cause, a wrapped user exception), or None when the failure was not one of ours."""
    seen, todo = set(), [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SelkdError):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "_base_exc", None),
                 getattr(current, "cause", None), *getattr(current, "worker_failures", {}).values()]
    return None
