"""A scan submitted as a Ray job (`ray job submit`) to a real Ray head on a loopback address."""
import json
import os
import subprocess
import sys

from helpers.ray_head import RAY, ray_head

from selkd_ray.io.history import read_history
from selkd_ray.io.results import read_scores


def test_a_scan_submitted_with_ray_job_submit(tiny_zoo, task_path, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"  # the same for the head and the submitting client
    out = tmp_path / "scan"
    with ray_head("127.0.0.6", env) as dashboard:
        done = subprocess.run([RAY, "job", "submit", "--address", dashboard, "--", sys.executable, "-m",
                               "selkd_cli.main", "scan", "--zoo", str(tiny_zoo), "--task", str(task_path),
                               "--out", str(out), "--scorer", "leep", "--probe-per-class", "6", "--json"],
                              capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    document = next(json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))
    assert document["ran"] == 3 and document["teachers"][0]["teacher_id"] == "own-classes"
    assert {row["node"] for row in document["teachers"]} == {"127.0.0.6"}  # run inside the job's cluster
    rows = read_scores(out / "scores.parquet")
    assert rows[0]["teacher_id"] == "own-classes" and rows[0]["rank"] == 1
    assert len(read_history(out / "history.parquet")) == 1
