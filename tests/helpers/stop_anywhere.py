"""Issue 44.2: a real `selkd select` (its own embedded Ray, a fresh process each time) stopped at moments spread
over its whole run, by SIGTERM to its process group, SIGINT to the process and SIGKILL to the group, and
started again after each stop on the same output; then run to its end, and once more. Beside it the same
selection run straight through. What each run printed and how it ended goes to OUT/stops.json for
tests/test_stop_anywhere.py (run beside the suite: helpers/background.py).

    python tests/helpers/stop_anywhere.py OUT ZOO TASK

Each moment is a line the command prints (the stage it has reached) and a delay after it, so every stage
boundary is hit: in the scan, in the teachers' outputs, in the race, in the restored race, in the final
student's training, and after the decision. A moment whose line never comes (its stage was already done) is
recorded as not hit, and that run's exit code is then its own end."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.killing import descendants, ray_processes_started_by, still_running  # noqa: E402

MOMENTS = (  # (a line's start, seconds after it, signal, to the whole group)
    ("round 1/1", 0.0, signal.SIGTERM, True),
    ("teacher outputs:", 0.0, signal.SIGINT, False),
    ("race: 3 candidates", 1.5, signal.SIGKILL, True),
    ("race: ", 2.0, signal.SIGTERM, True),  # the restored race ("ran before ..."), its trials rerunning
    ("final-", 0.0, signal.SIGKILL, True),  # the final student's first epoch reported
    ("final-", 0.0, signal.SIGINT, False),  # resumed from that epoch's checkpoint
    ("student final-", 0.0, signal.SIGTERM, True),  # trained and decided: the stop comes as it is written
)


def command(zoo: str, task: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "selkd_cli.main", "select", "--zoo", zoo, "--task", task, "--out", str(out),
            "--shortlist", "2", "--race-epochs", "2", "--epochs", "3", "--probe-per-class", "5"]


def run(argv: list[str], moment: tuple | None = None, timeout: float = 300) -> dict:
    """Run `argv` to its end, or stop it at `moment`; what it printed, its exit code, whether the moment came,
    and what of its processes (its own Ray's included) still ran 10 s after it ended."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own embedded Ray
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    lines: list[str] = []
    out: list[str] = []
    hit = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if moment is not None and not hit.is_set() and line.startswith(moment[0]):
                hit.set()

    # each pipe read by one thread alone (`communicate` would race the stderr reader for the last lines)
    readers = [threading.Thread(target=read, daemon=True),
               threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    sent, family = None, ()
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if moment is None:  # run to its end (waiting, not spinning on poll: the run needs both cores)
            time.sleep(0.1)
        elif hit.wait(0.02):
            time.sleep(moment[1])
            if process.poll() is None:
                family = descendants(process.pid)
                (os.killpg if moment[3] else os.kill)(process.pid, moment[2])
                sent = time.monotonic()
            break
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stopped = time.monotonic()
    for reader in readers:
        reader.join(timeout=10)
    stdout = "".join(out)
    left = sorted(set(ray_processes_started_by(process.pid, wait_s=10)) | set(still_running(family, wait_s=10)))
    return {"left": left, "moment": moment[0] if moment else None, "signal": moment[2].name if moment else None,
            "hit": hit.is_set(), "stopped": sent is not None, "returncode": process.returncode,
            "stop_seconds": stopped - sent if sent else None, "stdout": stdout, "stderr": "".join(lines)}


def main(folder: Path, zoo: str, task: str) -> dict:
    straight = run(command(zoo, task, folder / "straight"))
    stopped = []
    for moment in MOMENTS:  # and what each stop left: a selection.parquet, how many race folders
        stopped.append(run(command(zoo, task, folder / "stopped"), moment))
        race = folder / "stopped" / "race"
        stopped[-1].update(selection=(folder / "stopped" / "selection.parquet").exists(),
                           races=len(list(race.iterdir())) if race.is_dir() else 0)
    final = run(command(zoo, task, folder / "stopped"))
    trained = written(folder / "stopped")
    again = run(command(zoo, task, folder / "stopped"))
    return {"straight": straight, "stops": stopped, "final": final, "again": again,
            "rewritten": sorted(name for name, stamp in written(folder / "stopped").items()
                                if trained.get(name) != stamp)}


def written(out: Path) -> dict[str, str]:
    """Each file a selection trains into (its race, its students' runs and folders) and its content's hash."""
    return {str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
            for part in ("race", "runs", "students") for path in (out / part).rglob("*") if path.is_file()}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    (out / "stops.json").write_text(json.dumps(main(out, sys.argv[2], sys.argv[3])))
