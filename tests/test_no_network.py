"""No packet leaves loopback: commands run under `strace -f` (tests/helpers/network.py), and every connect /
sendto / sendmsg they make must go to 127.0.0.0/8, ::1 or a Unix socket, DNS queries to the machine's
resolver included. A whole selection (scan, Ray Tune race, final Ray Train runs) is traced by
tests/test_select.py::test_select_races_the_shortlist_under_one_budget_and_reports_it."""
import math

import pyarrow.parquet as pq
from helpers.network import NEEDS_STRACE, off_loopback, traced


def test_the_parser_sees_an_outside_address():
    """The check can fail: a DNS query to the resolver, an outside IPv6 peer; loopback and Unix sockets pass."""
    assert off_loopback('connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0') == ["10.255.255.53"]
    assert off_loopback('sendto(3, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)}, 28) = 1') == ["2001:db8::1"]
    assert off_loopback('connect(7, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.2")}, 16) = 0') == []
    assert off_loopback('connect(9, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0') == []


@NEEDS_STRACE
def test_a_two_worker_distillation_sends_nothing_off_loopback(tiny_zoo, task_path, tmp_path):
    """Two Ray Train workers need a torch.distributed process group: on one node they meet through a FileStore,
    never torch's TCPStore (which reverse-resolves every peer by DNS). Under augmentation, so the teacher runs
    online in both workers: the run trains its epoch with a finite loss."""
    lines = traced(tmp_path, "distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path),
                   "--out", str(tmp_path / "out"), "--epochs", "1", "--workers", "2", "--augment")
    outside = [line for line in lines if off_loopback(line)]
    assert not outside, "\n".join(outside[:20])
    metrics, = (tmp_path / "out").glob("*.metrics.parquet")
    history = pq.read_table(metrics).to_pylist()
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
