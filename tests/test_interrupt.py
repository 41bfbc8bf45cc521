"""Ctrl-C (SIGINT) and SIGTERM stop a command within seconds, exit 130, leaving every output whole, and the
same command then resumes. Real processes, real signals, a real embedded Ray each."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

STOP_WITHIN = 10.0  # seconds from the signal to the process's exit (the limit)


def selkd(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "selkd_cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(process: subprocess.Popen, pattern: str, timeout: float = 240.0) -> list[str]:
    """Read stderr until a line matches; the lines read so far."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    process.kill()
    raise AssertionError(f"never saw {pattern!r}; stderr: {''.join(lines)[-2000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_distill_at_once_and_the_rerun_resumes(signum, tiny_zoo, task_path, tmp_path):
    out = tmp_path / "students"
    args = ["distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path), "--out", str(out),
            "--epochs", "4"]
    process = selkd(*args)
    wait_for(process, r"epoch [1-3]/4")  # a checkpoint is on disk: the run has started training
    process.send_signal(signum)
    sent = time.monotonic()
    try:
        process.wait(timeout=STOP_WITHIN + 20)
    finally:
        process.kill()
    took = time.monotonic() - sent
    rest = process.stderr.read()
    assert process.returncode == 130, rest[-2000:]
    assert took < STOP_WITHIN, f"stopped after {took:.1f} s"
    assert "interrupted: stopping; what was written is kept" in rest and "Traceback" not in rest
    assert not list(out.glob("*.metrics.parquet"))  # no half-finished result
    done = [int(n) for n in re.findall(r"checkpoint_(\d+)", " ".join(p.name for p in (out / "runs").rglob("checkpoint_*")))]
    assert done, "no checkpoint was kept"
    if signum == signal.SIGTERM:
        return  # the resume is the same for either signal: shown once
    again = subprocess.run([sys.executable, "-m", "selkd_cli.main", *args], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    first = int(re.search(r"epoch (\d+)/4", again.stderr).group(1))
    assert first >= 1, again.stderr[-2000:]  # resumed from the kept checkpoints, not from epoch 0
    assert len(list(out.glob("*.metrics.parquet"))) == 1
