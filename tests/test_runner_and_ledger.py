"""What a runner keeps loaded and what the ledger charges, without Ray: the runner is plain Python and the scan's
plan takes the function that runs teachers as an argument (the Ray layer passes its actor pool)."""
from dataclasses import replace

import numpy as np

from selkd_ray.config import ScanConfig
from selkd_ray.io.fs import Location
from selkd_ray.scoring.probe import make_probe
from selkd_ray.records import Predictions, TeacherResult
from selkd_ray.scoring.runner import TeacherRunner
from selkd_ray.plans.halving import run_plan
from selkd_ray.zoo.index import index_folders


def test_a_prefetched_teacher_that_is_not_run_is_let_go(tiny_zoo, target_task):
    """The driver reserves the next teacher, and the runner starts loading it; when the budget then refuses
    it (or the scan ends), the next call or `forget()` drops it, so reused runners do not pile teachers up."""
    a, b, c = (spec for spec, _, _ in index_folders(tiny_zoo))
    runner = TeacherRunner(num_threads=1)
    probe = make_probe(target_task, 2)
    assert runner(a, probe, upcoming=b).predictions is not None
    assert set(runner.prefetched) == {b.path}
    assert runner(c, probe, upcoming=None).predictions is not None  # b was refused: c ran instead
    assert runner.prefetched == {}
    runner.prefetch(a)
    runner.forget()
    assert runner.prefetched == {}


def test_a_teacher_that_fails_before_its_forward_pass_costs_nothing(tiny_zoo, target_task, tmp_path):
    specs = [spec for spec, _, _ in index_folders(tiny_zoo)]
    config = ScanConfig(scorers=("leep",), probe_per_class=4, budget="1e15")

    def run_teachers(pending, probe, admit, scoring):
        for spec in pending:
            assert admit(spec)  # each is charged as it starts
            if spec.teacher_id == "random":  # dies loading its weights: no forward pass ran
                yield TeacherResult(spec.teacher_id, None, f"{spec.path}: cannot load checkpoint")
            elif spec.teacher_id == "digits-01":  # dies after its forward pass (non-finite outputs, say)
                yield TeacherResult(spec.teacher_id, None, f"{spec.path}: non-finite outputs", forward_ran=True)
            else:
                count = len(probe)
                probs = np.full((count, spec.num_classes), 1 / spec.num_classes, np.float32)
                yield TeacherResult(spec.teacher_id, Predictions(probs, np.ones((count, 4), np.float32), 0.1),
                                    forward_ran=True)

    rows, ledger = run_plan(specs, target_task, Location(tmp_path), config, lambda event: None, run_teachers, None)
    cost = {spec.teacher_id: spec.flops_per_sample * 12 for spec in specs}  # 4 per class x 3 classes
    assert ledger.flops == cost["own-classes"] + cost["digits-01"]  # the one that never ran is refunded
    assert {row.teacher_id: row.status for row in rows} == {"own-classes": "scored", "digits-01": "failed",
                                                                   "random": "failed"}


def test_a_probe_larger_than_a_class_says_what_it_used(tiny_zoo, target_task, tmp_path):
    """When a class has fewer train images than the probe asks for, a note says so and the round line names
    what the probe used (a range where the classes differ), not what was asked."""
    specs = [spec for spec, _, _ in index_folders(tiny_zoo)]
    events = []
    most = int(np.bincount(target_task.split("train")[1]).min())

    def run_teachers(pending, probe, admit, scoring):
        for spec in pending:
            probs = np.full((len(probe), spec.num_classes), 1 / spec.num_classes, np.float32)
            yield TeacherResult(spec.teacher_id, Predictions(probs, np.ones((len(probe), 4), np.float32), 0.1),
                                forward_ran=True)

    config = ScanConfig(scorers=("leep",), probe_per_class=most + 5)
    rows, _ = run_plan(specs, target_task, Location(tmp_path), config, events.append, run_teachers, None)
    notes = [str(e) for e in events if e.kind == "note"]
    assert notes == [f"probe of round 1: {most + 5} images per class asked; 'three' has {most}, 'five' has "
                     f"{most}, 'eight' has {most} (all of them used)"]
    assert {row.probe_size for row in rows} == {3 * most}
    round_line, = [str(e) for e in events if e.kind == "round"]
    assert f"on a probe of {3 * most} images ({most} per class)" in round_line  # what it used, not what it asked

    # a class with 3 train images fewer than the others: the round line gives the range it used
    splits = target_task.splits.copy()
    splits[np.flatnonzero((target_task.labels == 1) & (splits == "train"))[:3]] = "test"
    events.clear()
    run_plan(specs, replace(target_task, splits=splits), Location(tmp_path / "short"), config, events.append,
             run_teachers, None)
    round_line, = [str(e) for e in events if e.kind == "round"]
    assert f"on a probe of {3 * most - 3} images ({most - 3}-{most} per class)" in round_line


def test_more_runner_actors_than_the_cluster_holds_are_said(ray_session):
    """Sized by the free CPU slots the pool saw when it started (2 on the suite's Ray when nothing else holds one;
    Ray's view of free slots lags what earlier tests let go, so the test reads the pool's own count)."""
    from helpers.killing import slots_free

    from selkd_ray.distributed.runners import RunnerPool

    slots_free()  # what an earlier test started (its pool, its Ray Train workers) has given its slots back
    with RunnerPool(max_actors=8, teachers=5) as pool:
        free = pool.capacity
        assert 1 <= free <= 2 and pool.count == free and len(pool.actors) == free  # not the 8 asked for
        assert pool.sizing(8, 5) == f"--max-actors 8: {free} runner actors (the cluster has {free} free CPU slots)"
        assert pool.sizing(free, 5) == ""


def test_a_small_zoo_runs_on_fewer_cpu_actors_than_slots(ray_session):
    """An actor's start costs more than a tiny zoo's probe passes: the pool's size follows the work on CPU
    slots (one actor per ACTOR_WORTH_FLOPS, at least one), never on GPUs; a pool sized by a small work starts
    one actor and says why."""
    from helpers.killing import slots_free

    from selkd_ray.distributed.runners import ACTOR_WORTH_FLOPS, RunnerPool, pool_size

    assert pool_size(4, None, 9, ACTOR_WORTH_FLOPS / 2) == 1  # less than one actor's worth: still one
    assert pool_size(4, None, 9, 2.5 * ACTOR_WORTH_FLOPS) == 2
    assert pool_size(4, None, 9, 100 * ACTOR_WORTH_FLOPS) == 4 and pool_size(4, 3, 9, 100 * ACTOR_WORTH_FLOPS) == 3
    assert pool_size(4, None, 9, None) == 4  # GPUs: one per GPU whatever the work
    slots_free()
    with RunnerPool(max_actors=8, teachers=5, work_flops=ACTOR_WORTH_FLOPS / 2) as small:
        assert small.count == len(small.actors) == 1
        if small.capacity > 1:
            assert small.sizing(8, 5) == (f"--max-actors 8: 1 runner actors (5 teachers' probe passes, "
                                          f"{ACTOR_WORTH_FLOPS / 2:.3g} FLOPs at most: an actor per 2e+11 FLOPs)")
