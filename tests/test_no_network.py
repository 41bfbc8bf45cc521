"""No packet leaves loopback: commands run under `strace -f` (tests/helpers/network.py), and every connect /
sendto / sendmsg they make must go to 127.0.0.0/8, ::1 or a Unix socket, DNS queries to the machine's
resolver included. A whole selection (scan, Ray Tune race, final Ray Train runs) is traced by
tests/test_select.py::test_select_races_the_shortlist_under_one_budget_and_reports_it."""
import math
import os

import pyarrow.parquet as pq
import pytest
from helpers.background import finished
from helpers.killing import ray_processes_of
from helpers.network import NEEDS_STRACE, connects, is_loopback, off_loopback, trace_of


def test_the_parser_sees_an_outside_address():
    """The check can fail: a DNS query to the resolver, an outside IPv6 peer; loopback and Unix sockets pass."""
    assert off_loopback('connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0') == ["10.255.255.53"]
    assert off_loopback('sendto(3, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)}, 28) = 1') == ["2001:db8::1"]
    assert off_loopback('connect(7, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.2")}, 16) = 0') == []
    assert off_loopback('connect(9, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0') == []


# its own embedded Ray under strace, on the suite's tiny zoo and task: run beside the suite (helpers/background.py)
TWO_WORKERS = ("tests/helpers/network.py", "{out}", "distill", "--teacher", "{zoo}/own-classes", "--task", "{task}",
               "--out", "{out}/out", "--epochs", "1", "--workers", "2", "--augment", "--quiet")


@NEEDS_STRACE
@pytest.mark.background("two-worker-distill", *TWO_WORKERS, lane="tests")
def test_a_two_worker_distillation_sends_nothing_off_loopback(tiny_zoo, task_path):
    """Two Ray Train workers need a torch.distributed process group: on one node they meet through a FileStore,
    never torch's TCPStore (which reverse-resolves every peer by DNS). Under augmentation, so the teacher runs
    online in both workers: the run trains its epoch with a finite loss."""
    done, out = finished("two-worker-distill", TWO_WORKERS)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = trace_of(out)
    outside = [line for line in lines if off_loopback(line)]
    assert connects(lines) > 10 and not outside, "\n".join(outside[:20])  # it did trace; nothing left loopback
    metrics, = (out / "out").glob("*.metrics.parquet")
    history = pq.read_table(metrics).to_pylist()
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


def listening(process) -> list[str]:
    """The addresses a process listens on (TCP), as ip:port."""
    import psutil

    try:
        sockets = process.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return [f"{s.laddr.ip}:{s.laddr.port}" for s in sockets if s.status == psutil.CONN_LISTEN]


def test_every_socket_the_embedded_ray_listens_on_is_loopback(ray_session, scan_here, tiny_zoo, target_task,
                                                              tmp_path):
    """The suite's Ray is an embedded one, started by `connect` as the CLI starts it: during a scan, the GCS,
    the raylet, the agents and every worker (the runner actor among them) listen on loopback only, never on
    `*` or 0.0.0.0. The check can fail: the listing sees the processes and their sockets."""
    from selkd_ray import ScanConfig

    scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("nce",), probe_per_class=4))
    sockets = {f"{process.name()} ({process.pid})": listening(process) for process in ray_processes_of(os.getpid())}
    seen = {name.split(" ")[0] for name, found in sockets.items() if found}
    assert {"gcs_server", "raylet"} <= seen, sockets  # it saw Ray's servers listen (the agents' may be between ports)
    outside = {name: [s for s in found if not is_loopback(s.rsplit(":", 1)[0])] for name, found in sockets.items()}
    assert not any(outside.values()), {name: found for name, found in outside.items() if found}
