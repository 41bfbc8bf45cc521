"""The scan plan on a real local Ray: successive halving, the budget, restarts, resume, one scan per output."""
import os
import signal
import subprocess
import sys

import pytest
import ray
from helpers.killing import ray_processes_started_by, still_running, stop_cli_midway

from selkd_ray.api import index_zoo, scan
from selkd_ray.config import ScanConfig
from selkd_ray.errors import SelkdError
from selkd_ray.io.lock import LOCK_FILE, ScanLock


def flops_per_sample(zoo):
    specs, _ = index_zoo(zoo)
    return {spec.teacher_id: spec.flops_per_sample for spec in specs}


def test_successive_halving_keeps_the_best_and_counts_every_round(scan_here, tiny_zoo, target_task, tmp_path):
    config = ScanConfig(scorers=("ot", "leep"), probe_per_class=8, eta=2, min_probe=2)  # rounds of 2, 4, 8 per class
    result = scan_here(tiny_zoo, target_task, tmp_path, config)
    rows = {r.teacher_id: r for r in result.rows}
    assert result.rows[0].teacher_id == "own-classes"
    assert (rows["own-classes"].status, rows["own-classes"].round) == ("scored", 2)
    assert sorted(r.status for r in result.rows) == ["dropped", "dropped", "scored"]
    assert [r.rank for r in result.rows] == [1, 2, 3]
    fps = flops_per_sample(tiny_zoo)
    assert rows["own-classes"].flops == fps["own-classes"] * 3 * (2 + 4 + 8)
    dropped_first = [r for r in result.rows if r.round == 0]
    assert len(dropped_first) == 1 and dropped_first[0].flops == fps[dropped_first[0].teacher_id] * 3 * 2
    assert result.flops == sum(r.flops for r in result.rows)
    assert result.dropped == 2 and "FLOPs" in result.spent


def test_flops_budget_is_never_exceeded_and_the_prescreen_picks_who_runs(scan_here, tiny_zoo, target_task,
                                                                         tmp_path):
    fps = flops_per_sample(tiny_zoo)
    budget = fps["own-classes"] * 30 + 1  # exactly one teacher on a 30-image probe
    result = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("ot",), probe_per_class=10,
                                                             budget=str(budget)))
    rows = {r.teacher_id: r for r in result.rows}
    # 'x-three', 'x-five', 'x-eight' name the target's classes: the semantic pre-screen runs it first
    assert rows["own-classes"].status == "scored"
    assert sorted(r.status for r in result.rows) == ["scored", "skipped", "skipped"]
    assert result.flops <= budget and result.skipped == 2
    assert [r.rank for r in result.rows] == [1, None, None]


def test_a_killed_runner_actor_is_restarted_and_its_teacher_retried(ray_session, wide_zoo, target_task, tmp_path):
    killed = []

    def kill_a_runner(event):
        if event.kind == "scored" and not killed:
            names = [n for n in ray.util.list_named_actors() if n.startswith("selkd-runner-")]
            ray.kill(ray.get_actor(names[0]), no_restart=False)
            killed.append(names[0])

    result = scan(wide_zoo, target_task, tmp_path, ScanConfig(scorers=("ot",), probe_per_class=5, max_actors=1),
                  progress=kill_a_runner)
    assert killed
    assert [r.status for r in result.rows] == ["scored"] * 9


def test_a_second_scan_on_the_same_output_fails_clearly(scan_here, tiny_zoo, target_task, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom selkd_ray.io.lock import ScanLock\n"
                               f"with ScanLock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SelkdError, match="another scan or selection is writing this output"):
            scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("ot",), probe_per_class=5))
    finally:
        holder.kill()
        holder.wait()
    result = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("ot",), probe_per_class=5))
    assert result.ran == 3 and (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_reentrant_in_one_process_and_held_until_the_outermost_exit(tmp_path):
    try_lock = [sys.executable, "-c", f"from selkd_ray.io.lock import ScanLock\nwith ScanLock({str(tmp_path)!r}): pass"]
    with ScanLock(tmp_path):
        with ScanLock(tmp_path):  # a selection's scan takes its lock again
            pass
        other = subprocess.run(try_lock, capture_output=True, text=True)
        assert other.returncode != 0 and "another scan or selection is writing this output" in other.stderr
    assert subprocess.run(try_lock, capture_output=True, text=True).returncode == 0  # released


def test_a_scan_stopped_or_killed_midway_resumes_from_the_cache(scan_here, wide_zoo, task_path, tmp_path):
    """SIGTERM to the group of a scan that started its own Ray (as `timeout`, `kill -TERM -PGID`, systemd and
    Kubernetes send it) stops it within 10 s with exit 130 and the interrupted line (its Ray's processes, in a
    group of their own, do not die under it) and none of its Ray outlives it; a SIGKILL later leaves it
    wherever it was; the scan then resumes from the cache, running only what neither run finished."""
    cache = tmp_path / "cache"
    arguments = ["scan", "--zoo", str(wide_zoo), "--task", str(task_path), "--out", str(tmp_path), "--scorer", "ot",
                 "--probe-per-class", "5", "--max-actors", "1"]
    entries = lambda: len(list(cache.glob("*.parquet")))  # noqa: E731
    stopped = stop_cli_midway(arguments, entries, 1, signal.SIGTERM, embedded=True)
    assert stopped.returncode == 130 and stopped.seconds < 10, (stopped.seconds, stopped.stderr[-3000:])
    assert "interrupted: stopping" in stopped.stderr and "Traceback" not in stopped.stderr
    assert 1 <= stopped.progress < 9  # stopped midway: what was written stays
    assert not ray_processes_started_by(stopped.pid, wait_s=10)
    assert len(stopped.family) >= 4 and not still_running(stopped.family, wait_s=10)  # GCS, raylet, agents, workers
    # SIGKILL, to the command's group as a crash or `kill -9 -PGID` leaves it: its Ray goes too, within seconds
    # (the raylet's agents once lingered a minute, waiting on the GCS that died: distributed/reaper.py)
    killed = stop_cli_midway(arguments, entries, stopped.progress + 1, signal.SIGKILL, embedded=True)
    finished = killed.progress
    assert stopped.progress < finished < 9, "the scan should have been killed midway"
    assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= {line.strip() for *_, line in killed.family}
    assert not still_running(killed.family, wait_s=10), still_running(killed.family)
    result = scan_here(wide_zoo, task_path, tmp_path, ScanConfig(scorers=("ot",), probe_per_class=5))
    assert (result.cached, result.ran) == (finished, 9 - finished)


def test_the_listing_of_a_sessions_processes_sees_the_suites_own_ray(ray_session):
    """The check above can fail: the suite's own Ray (started by this process) is listed by it."""
    assert len(ray_processes_started_by(os.getpid())) >= 2  # its GCS and raylet at least


def test_a_driver_can_keep_its_runners_across_scans(ray_session, tiny_zoo, target_task, tmp_path):
    from selkd_ray.distributed.runners import RunnerPool

    pool = RunnerPool(max_actors=1).ready()
    try:
        first = scan(tiny_zoo, target_task, tmp_path / "a", ScanConfig(scorers=("leep",), probe_per_class=5),
                     runners=pool)
        second = scan(tiny_zoo, target_task, tmp_path / "b", ScanConfig(scorers=("leep",), probe_per_class=6),
                      runners=pool)
        assert first.ran == second.ran == 3
        assert ray.get(pool.actors[0].__ray_ready__.remote())  # still running: the scans did not stop it
    finally:
        pool.close()


def test_rows_reused_in_a_later_round_keep_what_this_scan_spent_earlier(scan_here, tiny_zoo, target_task, tmp_path):
    config = ScanConfig(scorers=("ot",), probe_per_class=8, eta=2, min_probe=2)
    scan_here(tiny_zoo, target_task, tmp_path, config)
    for path in (tmp_path / "cache").glob("*.parquet"):  # predictions gone, the last scores.parquet kept
        path.unlink()
    again = scan_here(tiny_zoo, target_task, tmp_path, config)
    assert again.flops > 0
    assert again.flops == sum(row.flops for row in again.rows)  # the ledger and the rows agree


def test_a_teacher_that_fails_at_indexing_is_reported_as_it_is_found(scan_here, zoo_copy, target_task, tmp_path):
    (zoo_copy / "digits-01" / "config.json").write_text("{not json")
    events = []
    scan_here(zoo_copy, target_task, tmp_path, ScanConfig(scorers=("leep",), probe_per_class=5), progress=events.append)
    failed = [e for e in events if e.kind == "failed"]
    assert [e.teacher_id for e in failed] == ["digits-01"] and "config.json" in failed[0].message
