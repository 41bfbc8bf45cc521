"""Run a `selkd` command in its own process (joined to the test's Ray) and SIGKILL it midway."""
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import ray


def kill_cli_midway(arguments: list[str], progress: Callable[[], int], at_least: int, timeout: float = 300,
                    poll: float = 0.02) -> int:
    """Start `selkd ARGUMENTS`, kill its whole process group once `progress()` reaches `at_least`, and return
    `progress()` after the kill (what the killed run left behind)."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    process = subprocess.Popen([sys.executable, "-m", "selkd_cli.main", *arguments], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and progress() < at_least:
        time.sleep(poll)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return progress()
