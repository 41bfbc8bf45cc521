"""Run `selkd` under `strace -f` and find every connect / sendto / sendmsg that leaves this machine's loopback
(127.0.0.0/8, ::1, Unix sockets pass): DNS queries to the machine's resolver included."""
import ipaddress
import re
import shutil
import subprocess
import sys

import pytest

ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
CALLS = ("connect", "sendto", "sendmsg")
# Traced too, though never read: every new thread and process calls it first thing (glibc's thread start, fork's
# child, a fresh exec's libc set-up). strace 6.1 under `-f --seccomp-bpf` stops a new task at *every* system call
# until that task's first traced one (a thread that computes without connecting ran 70x slower), so without an
# early traced call Ray's and torch's threads were fully traced: the traced selection took 50 s, not 31 s.
FIRST_CALLS = ("set_robust_list", "rseq")


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4 loopback address mapped into IPv6 (how a dual-stack socket shows it)."""
    address = ipaddress.ip_address(address)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def off_loopback(line: str) -> list[str]:
    """The addresses a traced call names that are not this machine's loopback (the unspecified address, which
    a call names for "any", passes)."""
    return [v4 or v6 for v4, v6 in ADDRESS.findall(line)
            if not (is_loopback(v4 or v6) or ipaddress.ip_address(v4 or v6).is_unspecified)]


def strace_command(log, args) -> list[str]:
    """`selkd ARGS` under `strace -f`, its trace written to `log`."""
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={','.join(CALLS + FIRST_CALLS)}", "-o", str(log),
            sys.executable, "-m", "selkd_cli.main", *args]


def trace_of(log_dir) -> list[str]:
    """The traced calls of a run whose trace is in `log_dir`."""
    return (log_dir / "strace.log").read_text(errors="replace").splitlines()


def connects(lines: list[str]) -> int:
    """How many connect calls the trace holds (a trace that saw none did not trace)."""
    return sum(line.split("(", 1)[0].split()[-1] == "connect" for line in lines if "(" in line)


NEEDS_STRACE = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="strace is not installed (scripts/setup.sh --with-browser installs it)")




# Ray's own lines: its C++ components' log format (`[2026-12-03 20:00:00,123 W 123 456] core_worker.cc:789: ...`)
# and what the driver relays from the raylet (`(raylet) WARNING: ...`).
RAY_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] \S+\.(cc|h):\d+|\(raylet\)|\(pid=|\bcore_worker\.cc\b")


def ray_lines(text: str) -> list[str]:
    """The lines of a command's output that come from Ray's internals, not from selkd."""
    return [line for line in text.splitlines() if RAY_LINE.search(line)]


if __name__ == "__main__":  # `python tests/helpers/network.py LOG_DIR ARGS...`: a traced run as a background job
    from pathlib import Path

    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    sys.exit(subprocess.run(strace_command(Path(sys.argv[1]) / "strace.log", sys.argv[2:])).returncode)
