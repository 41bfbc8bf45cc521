"""No packet leaves loopback: a short selection (a scan, a Ray Tune race of Ray Train trials, a final Ray Train
distillation, on an embedded Ray) runs under `strace -f`, and every connect / sendto / sendmsg it makes must go
to 127.0.0.0/8, ::1 or a Unix socket. DNS queries to the machine's resolver included."""
import ipaddress
import math
import os
import re
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
CALLS = ("connect", "sendto", "sendmsg")


def off_loopback(line: str) -> list[str]:
    """The addresses a traced call names that are not this machine's loopback."""
    bad = []
    for v4, v6 in ADDRESS.findall(line):
        address = ipaddress.ip_address(v4 or v6)
        mapped = getattr(address, "ipv4_mapped", None)
        if not (address.is_loopback or address.is_unspecified or (mapped is not None and mapped.is_loopback)):
            bad.append(str(address))
    return bad


def test_the_parser_sees_an_outside_address():
    """The check can fail: a DNS query to the resolver, an outside IPv6 peer; loopback and Unix sockets pass."""
    assert off_loopback('connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0') == ["10.255.255.53"]
    assert off_loopback('sendto(3, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)}, 28) = 1') == ["2001:db8::1"]
    assert off_loopback('connect(7, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.2")}, 16) = 0') == []
    assert off_loopback('connect(9, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0') == []


def traced(tmp_path, *args: str) -> list[str]:
    """Run `selkd ARGS` (its own embedded Ray, so every Ray process is its child) under strace; the calls."""
    log = tmp_path / "strace.log"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    done = subprocess.run(["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={','.join(CALLS)}", "-o", str(log),
                           sys.executable, "-m", "selkd_cli.main", *args, "--quiet"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return log.read_text(errors="replace").splitlines()


NEEDS_STRACE = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="strace is not installed (scripts/setup.sh --with-browser installs it)")


@NEEDS_STRACE
def test_a_selection_sends_nothing_off_loopback(tiny_zoo, task_path, tmp_path):
    lines = traced(tmp_path, "select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path / "out"),
                   "--scorer", "leep", "--probe-per-class", "4", "--shortlist", "1", "--race-epochs", "1",
                   "--epochs", "1")
    assert sum(line.split("(", 1)[0].split()[-1] == "connect" for line in lines if "(" in line) > 10  # it did trace
    outside = [line for line in lines if off_loopback(line)]
    assert not outside, "\n".join(outside[:20])


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
