"""A real two-node Ray cluster on this machine: `selkd scan --address` spreads teachers over both nodes."""
import json
import os
import subprocess
import sys
from pathlib import Path

HELPER = Path(__file__).parent / "helpers" / "two_node_cluster.py"


def test_scan_through_address_runs_teachers_on_both_nodes(wide_zoo, task_path, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    cluster = subprocess.Popen([sys.executable, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("127.0.0.3:"), address
        done = subprocess.run([sys.executable, "-m", "selkd_cli.main", "scan", "--zoo", str(wide_zoo),
                               "--task", str(task_path), "--out", str(tmp_path), "--scorer", "ot",
                               "--probe-per-class", "5", "--address", address, "--json"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        assert result["ran"] == 9
        assert {row["node"] for row in result["teachers"]} == {"127.0.0.3", "127.0.0.4"}
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=60)
