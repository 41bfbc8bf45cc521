"""A scan submitted as a Ray job (`ray job submit`) to a real Ray head on a loopback address, with Ray's token
authentication on as every cluster config provisions it: the right token is accepted; no token, or a wrong
one, is refused, for a job submission and for a driver alike.

The head, the submissions and the drivers need nothing of the suite's Ray: this file run as a script
(`python tests/test_job_submission.py OUT ZOO TASK`) does them all and writes what each printed to
OUT/clients.json; the suite runs it beside the other tests (helpers/background.py) and the test reads it."""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.background import finished
from helpers.ray_head import RAY, ray_head

HOST = "127.0.0.6"
SUBMIT = ("tests/test_job_submission.py", "{out}", "{zoo}", "{task}")


def client(env: dict, token: str | None) -> dict:
    """A client's environment: token auth with `token`, or no token auth at all (None)."""
    env = {key: value for key, value in env.items() if key != "RAY_AUTH_TOKEN"}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {**env, "RAY_AUTH_MODE": "disabled"}


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return {"returncode": process.returncode, "stdout": stdout, "stderr": stderr}


def submit_all(out: Path, zoo: str, task: str) -> dict:
    """Start a token-authenticated head; submit the scan with the right token, and with none or a wrong one
    submit a job and start a driver: what each client printed, and the head's GCS address."""
    token = secrets.token_hex(16)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # the head's (what the configs provision)
    scan = [sys.executable, "-m", "selkd_cli.main", "scan", "--zoo", zoo, "--task", task]
    with ray_head(HOST, env) as head:
        # every client at once: a refused one spends most of its time in Ray's connection retries
        started = {}
        for name, token_used in [("no token", None), ("wrong token", secrets.token_hex(16))]:
            started[name] = (start([RAY, "job", "submit", "--address", head.dashboard, "--", "echo", "in"],
                                   client(env, token_used)),
                             start([*scan, "--out", str(out / name), "--address", head.gcs],
                                   client(env, token_used)))
        job = start([RAY, "job", "submit", "--address", head.dashboard, "--", *scan, "--out", str(out / "scan"),
                     "--scorer", "leep", "--probe-per-class", "6", "--json"], client(env, token))
        refused = {name: (finish(submit, 120), finish(driver, 120)) for name, (submit, driver) in started.items()}
        done = finish(job, 400)
    return {"gcs": head.gcs, "refused": refused, "done": done}


@pytest.mark.background("job-submission", *SUBMIT, lane="tests")
def test_a_scan_submitted_with_ray_job_submit_and_only_with_the_token(tiny_zoo, task_path):
    from selkd_ray.io.history import read_history
    from selkd_ray.io.results import read_scores

    ran, out = finished("job-submission", SUBMIT)
    assert ran.returncode == 0, ran.stderr[-3000:]
    clients = json.loads((out / "clients.json").read_text())
    gcs, done = clients["gcs"], clients["done"]
    for name, (submit, driver) in clients["refused"].items():
        assert submit["returncode"] != 0 and "token" in submit["stderr"], name
        assert "Job 'raysubmit" not in submit["stdout"], name
        assert driver["returncode"] == 2, (name, driver["stderr"][-2000:])
        last = driver["stderr"].strip().splitlines()[-1]
        assert last.startswith(f"error: --address: the Ray cluster at {gcs} did not accept this driver"), last
        assert "Traceback" not in driver["stderr"] and not (out / name / "scores.parquet").exists()
    assert done["returncode"] == 0, (done["stdout"] + done["stderr"])[-3000:]
    assert "succeeded" in done["stdout"] + done["stderr"]
    document = next(json.loads(line) for line in done["stdout"].splitlines() if line.startswith("{"))
    assert document["ran"] == 3 and document["teachers"][0]["teacher_id"] == "own-classes"
    assert {row["node"] for row in document["teachers"]} == {HOST}  # run inside the job's cluster
    rows = read_scores(out / "scan" / "scores.parquet")
    assert rows[0].teacher_id == "own-classes" and rows[0].rank == 1
    assert len(read_history(out / "scan" / "history.parquet")) == 1


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    (folder / "clients.json").write_text(json.dumps(submit_all(folder, *sys.argv[2:4])))
