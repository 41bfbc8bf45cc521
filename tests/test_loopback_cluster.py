"""One real two-node Ray cluster on loopback addresses (127.0.0.3 and 127.0.0.4), each node declaring 2 CPU
slots and 1 GPU (Ray lets a node declare GPUs it lacks), shared by this module's tests: `selkd scan --address`
spreads teachers over both nodes; a scan starts one runner per GPU and no CPU-slot runners; race trials hold a
fraction of a GPU each; GPU training asks for GPUs, and where torch sees no CUDA every worker says so in one line
and falls back to the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).parent / "helpers" / "loopback_cluster.py"
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def cluster():
    """A real two-node cluster declaring 4 CPU slots and 2 GPUs in all: a CPU-slot scan would start 4 runners."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    process = subprocess.Popen([sys.executable, str(HELPER), "2", "1"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.3:"), address
        yield address, env
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def selkd(env: dict, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selkd_cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_scan_through_address_runs_one_runner_per_gpu_on_both_nodes(cluster, wide_zoo, task_path, tmp_path):
    """The two-node scan (teachers spread over both nodes) and the GPU node's scan (one runner per declared GPU,
    none per CPU slot) in one: each node's GPU holds one runner."""
    address, env = cluster
    done = selkd(env, "scan", "--zoo", str(wide_zoo), "--task", str(task_path), "--out", str(tmp_path),
                 "--scorer", "ot", "--probe-per-class", "5", "--address", address, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ran"] == 9
    assert {row["node"] for row in result["teachers"]} == {"127.0.0.3", "127.0.0.4"}
    runners = result["runners"]
    assert len(runners) == 2  # 2 GPUs, though the cluster has 4 CPU slots and the zoo 9 teachers
    assert all(r["resources"] == {"GPU": 1, "CPU": 1} for r in runners)
    assert all(len(r["gpu_ids"]) == 1 for r in runners)  # one GPU each ...
    assert sorted(r["node"] for r in runners) == ["127.0.0.3", "127.0.0.4"]  # ... one on each node's GPU
    if NO_CUDA:
        assert {r["device"] for r in runners} == {"cpu"}
        warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "torch sees no CUDA" in warnings[0], done.stderr[-2000:]


def test_race_trials_share_a_gpu_and_gpu_training_falls_back_in_one_line(cluster, tiny_zoo, task_path, tmp_path):
    address, env = cluster
    done = selkd(env, "select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                 "--scorer", "leep", "--probe-per-class", "4", "--shortlist", "1", "--race-epochs", "1",
                 "--epochs", "1", "--gpus", "1", "--trials-per-gpu", "4", "--address", address, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    trials = result["trials"]
    assert len(trials) == 2 and all(t["gpu"] == 0.25 for t in trials)
    if NO_CUDA:
        assert all(t["device"] == "cpu" for t in trials)
        fallbacks = [line for line in done.stderr.splitlines() if "training on 1 CPU worker(s) instead" in line]
        assert fallbacks and all(line.startswith("warning:") for line in fallbacks), done.stderr[-2000:]


def test_more_gpus_than_the_cluster_has_is_one_line(cluster, task_path, tmp_path):
    address, env = cluster
    done = selkd(env, "distill", "--task", str(task_path), "--out", str(tmp_path), "--gpus", "3",
                 "--address", address)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --gpus: 3 GPU worker(s) asked for, but the cluster has 2 GPU(s)"
