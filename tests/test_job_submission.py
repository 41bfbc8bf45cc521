"""A scan submitted as a Ray job (`ray job submit`) to a real Ray head on a loopback address, with Ray's token
authentication on as every cluster config provisions it: the right token is accepted; no token, or a wrong
one, is refused, for a job submission and for a driver alike."""
import json
import os
import secrets
import subprocess
import sys

from helpers.ray_head import RAY, ray_head

from selkd_ray.io.history import read_history
from selkd_ray.io.results import read_scores


def client(env: dict, token: str | None) -> dict:
    """A client's environment: token auth with `token`, or no token auth at all (None)."""
    env = {key: value for key, value in env.items() if key != "RAY_AUTH_TOKEN"}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {**env, "RAY_AUTH_MODE": "disabled"}


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_a_scan_submitted_with_ray_job_submit_and_only_with_the_token(tiny_zoo, task_path, tmp_path):
    token = secrets.token_hex(16)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # the head's (what the configs provision)
    out = tmp_path / "scan"
    scan = [sys.executable, "-m", "selkd_cli.main", "scan", "--zoo", str(tiny_zoo), "--task", str(task_path)]
    with ray_head("127.0.0.6", env) as head:
        # every client at once: a refused one spends most of its time in Ray's connection retries
        started = {}
        for name, token_used in [("no token", None), ("wrong token", secrets.token_hex(16))]:
            started[name] = (start([RAY, "job", "submit", "--address", head.dashboard, "--", "echo", "in"],
                                   client(env, token_used)),
                             start([*scan, "--out", str(tmp_path / name), "--address", head.gcs],
                                   client(env, token_used)))
        job = start([RAY, "job", "submit", "--address", head.dashboard, "--", *scan, "--out", str(out),
                     "--scorer", "leep", "--probe-per-class", "6", "--json"], client(env, token))
        refused = {name: (finish(submit, 120), finish(driver, 120)) for name, (submit, driver) in started.items()}
        done = finish(job, 400)
    for name, (submit, driver) in refused.items():
        assert submit.returncode != 0 and "token" in submit.stderr and "Job 'raysubmit" not in submit.stdout, name
        assert driver.returncode == 2, (name, driver.stderr[-2000:])
        last = driver.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --address: the Ray cluster at {head.gcs} did not accept this driver"), last
        assert "Traceback" not in driver.stderr and not (tmp_path / name / "scores.parquet").exists()
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    document = next(json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))
    assert document["ran"] == 3 and document["teachers"][0]["teacher_id"] == "own-classes"
    assert {row["node"] for row in document["teachers"]} == {"127.0.0.6"}  # run inside the job's cluster
    rows = read_scores(out / "scores.parquet")
    assert rows[0].teacher_id == "own-classes" and rows[0].rank == 1
    assert len(read_history(out / "history.parquet")) == 1
