"""Ray Train distillation: checkpoints, resume after a kill, early stopping, the FLOPs budget, N workers,
an online teacher under augmentation, and a student folder that joins the zoo."""
import copy
import os
import signal
import time

import numpy as np
import pytest
import ray
import torch
from helpers.killing import ray_processes_started_by, still_running, stop_cli_midway

from selkd_ray.api import distill, index_zoo
from selkd_ray.config import DistillConfig
from selkd_ray.errors import SelkdError
from selkd_ray.plans.distill import finish
from selkd_ray.progress import quiet
from selkd_ray.training.data import ready
from selkd_ray.training.loop import LoopState, epoch_flops, finished, fit_epochs, loaders, new_student
from selkd_ray.training.student_data import run_name, student_data, teacher_spec


def this_jobs_actors() -> list[dict]:
    """The actors this process's runs started, the dead among them (the GCS's actor table: the state API needs a
    dashboard); a CLI driver joined to the suite's Ray is another job, a cluster's driver to Ray Train."""
    import ray._private.state

    job = ray.get_runtime_context().get_job_id()
    return [actor for actor in ray._private.state.actors().values() if actor["JobID"] == job]


def test_distillation_reports_a_checkpoint_and_saves_a_teacher_folder(ray_session, tiny_zoo, target_task, tmp_path):
    config = DistillConfig(epochs=2, seed=0)
    result = distill(target_task, tiny_zoo / "own-classes", tmp_path, config, name="student")
    assert [row.epoch for row in result.history] == [0, 1]
    assert all(np.isfinite(row.loss) for row in result.history)
    assert result.stopped == ""
    # the saved student, read back as a teacher folder, scores what was reported on the test split, above chance
    from selkd_ray.records import ProbeSet
    from selkd_ray.training.student_data import local_teacher_probs

    rows = target_task.indices("test")
    labels = target_task.labels[rows]
    probs = local_teacher_probs(teacher_spec(result.student_dir),
                                ProbeSet(target_task.subset(rows), labels, target_task.label_names, "test"))
    assert (probs.argmax(1) == labels).mean() == pytest.approx(result.test_accuracy)
    assert result.test_accuracy > 1 / target_task.num_classes + 0.1
    checkpoints = [c for c in (tmp_path / "runs").glob("*/checkpoint_*") if c.is_dir()]
    assert len(checkpoints) == 2 and all((c / "student.pt").is_file() for c in checkpoints)
    assert (result.student_dir / "model.safetensors").is_file()
    assert result.curve_path.stat().st_size > 5_000
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1  # the teacher's outputs, computed once
    # the run started only the actors it needs: no Ray Data shard manager (it reads no Ray Dataset) and, on an
    # embedded Ray, no preemption watcher (nothing drains its one node) nor placement-group cleaner (the driver
    # cleans up: the next test): each was a process and a second or more of CPU
    started = {actor["ActorClassName"] for actor in this_jobs_actors()}
    assert "TrainController" in started, started
    assert not {"DatasetManager", "PreemptionWatcher", "PlacementGroupCleaner"} & started, started
    specs, _ = index_zoo(tmp_path, tmp_path / "catalogue.parquet")
    student = next(s for s in specs if s.teacher_id == "student")
    assert student.label_names == target_task.label_names and not student.error

    again = distill(target_task, tiny_zoo / "own-classes", tmp_path, config, name="student")
    assert again.run_name == result.run_name and again.history == result.history  # the finished run, reused

    # the same name with other settings: refused in one line naming what differs; the first student stays whole
    before = {path: path.read_bytes() for path in tmp_path.glob("student*") if path.is_file()}
    with pytest.raises(SelkdError, match=r"student\.metrics\.parquet: a student of this name distilled with "
                                         r"other settings is here \(epochs 2 there, 3 here\); give another --out"):
        distill(target_task, tiny_zoo / "own-classes", tmp_path, DistillConfig(epochs=3, seed=0), name="student")
    assert {path: path.read_bytes() for path in tmp_path.glob("student*") if path.is_file()} == before


def test_small_students_share_a_ray_train_run_and_large_ones_keep_their_own():
    """The packing rule alone: students planned below a run's start-up worth of training, that scale alike,
    train one after the other in one run; the others each keep a run (side by side)."""
    from dataclasses import replace

    from selkd_ray.distributed.train import PACK_WORTH_FLOPS, Pack, TrainRun, packs

    small, large = PACK_WORTH_FLOPS / 10, PACK_WORTH_FLOPS * 10
    run = lambda name, work, **config: TrainRun(None, DistillConfig(**config), "/runs", name, work=work)  # noqa: E731
    planned = packs([run("a", small), run("b", large), run("c", small), run("d", small, num_workers=2),
                     run("e", small), run("f", small, num_workers=2)])
    assert [pack.indices for pack in planned] == [(0, 2, 4), (1,), (3, 5)]
    assert planned[1].name == "b" and planned[0].name.startswith("pack-")  # a pack of one is its student's run
    assert planned[0].name == packs([run("a", small), run("c", small), run("e", small)])[0].name  # the same run again
    assert planned[0].name != packs([run("a", small), run("c", small)])[0].name
    unknown = replace(run("g", small), work=float("inf"))  # no plan: never packed
    assert [pack.indices for pack in packs([run("a", small), unknown])] == [(0,), (1,)]
    assert isinstance(planned[0], Pack) and planned[0].run_dir.name == planned[0].name


def plain_job(task, teacher, out, config, name):
    """A distillation planned as `distill` plans it (teacher outputs from the cache, one-line checks), to be
    trained on the plain loop: the stopping rules are the loop's own, and Ray Train adds nothing to them."""
    from selkd_ray.plans.distill import plan_distillation

    return plan_distillation(task, teacher, out, config, None, name, quiet, None)


@pytest.fixture
def one_torch_thread():
    """In-process training on one intra-op thread, as Ray gives its workers: beside the background jobs the
    suite's second torch thread waited on a core another process held, and these tests of a second or less
    took 13-35 s in the suite. (Their checks read no weights that the thread count changes.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plain_loop(job):
    """The student, optimiser and batches of a plain run: fit_epochs called again on them with the saved state
    is a resume, as a Ray Train worker resumes from its checkpoint."""
    data = ready(job.data)
    student, optimizer = new_student(data, job.config)
    return data, student, optimizer, loaders(data, job.config)


def test_a_run_whose_controller_is_killed_leaves_no_placement_group_on_an_embedded_ray(ray_session, tiny_zoo,
                                                                                        target_task, tmp_path):
    """Without Ray Train's cleaner actor (an embedded Ray's runs start none), the driver removes what a run that
    died ungracefully left: its controller killed mid-run, the distillation fails, and no placement group of it
    holds the CPU slots afterwards (Ray would keep it until the suite's job ends)."""
    import threading

    from helpers.killing import slots_free

    from selkd_ray.distributed.placement import live_placement_groups

    before, failed = live_placement_groups(), []

    def run() -> None:
        try:
            distill(target_task, tiny_zoo / "own-classes", tmp_path, DistillConfig(epochs=50), name="killed")
        except BaseException as err:  # noqa: BLE001 - the failure is the point
            failed.append(err)

    def live_controllers() -> list[int]:
        return [actor["Pid"] for actor in this_jobs_actors()
                if actor["ActorClassName"] == "TrainController" and actor["State"] == "ALIVE"]

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while not (checkpoints := list((tmp_path / "runs").glob("*/checkpoint_*"))) and time.time() < deadline:
        time.sleep(0.1)  # mid-run: an epoch checkpointed, its placement group made
    assert checkpoints and live_placement_groups() - before, "the run never got going"
    controller, = live_controllers()
    os.kill(controller, signal.SIGKILL)  # as a crash or the OOM killer would end it
    thread.join(timeout=120)
    assert failed and not (tmp_path / "killed.metrics.parquet").exists()  # no finished student claimed
    assert live_placement_groups() - before == set()
    slots_free(timeout=30)  # every CPU slot back for the tests after it


def test_early_stopping_keeps_the_best_epoch(one_torch_thread, ray_session, tiny_zoo, target_task, tmp_path):
    # learning rate 0: only batch-norm statistics move, so validation accuracy soon stops improving
    frozen = DistillConfig(epochs=8, learning_rate=0.0, weight_decay=0.0, patience=1)
    job = plain_job(target_task, tiny_zoo / "own-classes", tmp_path, frozen, "frozen")
    data, student, optimizer, batches = plain_loop(job)
    state = LoopState()
    trained = fit_epochs(student, optimizer, data, frozen, torch.device("cpu"), *batches, state)
    result = finish(job, trained, "plain", time.perf_counter(), quiet)  # as distill reports a Ray Train run
    accuracies = [row.val_accuracy for row in result.history]
    assert result.stopped.startswith("early stop") and len(accuracies) < 8
    assert result.best_epoch == int(np.argmax(accuracies)) and len(accuracies) - 1 - result.best_epoch == 1
    assert [row.best for row in result.history].count(True) == 1
    resumed = LoopState.from_saved(state.saved())  # what the checkpoint holds, read back
    assert finished(resumed, frozen)  # the plan does not start it again
    again = fit_epochs(student, optimizer, data, frozen, torch.device("cpu"), *batches, resumed)
    assert again.history == trained.history and again.stopped == result.stopped  # stays stopped: no extra epoch


def test_flops_budget_stops_training_and_is_reported(one_torch_thread, ray_session, tiny_zoo, target_task,
                                                     tmp_path):
    spec = teacher_spec(tiny_zoo / "own-classes")
    config = DistillConfig(epochs=6)
    one_epoch = epoch_flops(student_data(target_task, spec, config, None), config)
    limited, larger = (DistillConfig(epochs=6, max_flops=k * one_epoch) for k in (2.5, 4.5))
    job = plain_job(target_task, tiny_zoo / "own-classes", tmp_path, limited, "budget")
    data, student, optimizer, batches = plain_loop(job)
    state = LoopState()
    result = fit_epochs(student, optimizer, data, limited, torch.device("cpu"), *batches, state)
    assert len(result.history) == 2 and result.flops <= 2.5 * one_epoch
    assert result.stopped.startswith("FLOPs budget") and not finished(state, limited)
    # the budget is a limit, not an input: the same run continues
    assert run_name("b", larger, spec, target_task, data.cost) == run_name("b", limited, spec, target_task, data.cost)
    more = fit_epochs(student, optimizer, data, larger, torch.device("cpu"), *batches, LoopState.from_saved(state.saved()))
    assert [row["loss"] for row in more.history[:2]] == [row["loss"] for row in result.history]  # not retrained
    assert len(more.history) == 4 and more.flops <= 4.5 * one_epoch
    with pytest.raises(SelkdError, match="does not cover one epoch"):
        distill(target_task, tiny_zoo / "own-classes", tmp_path, DistillConfig(max_flops=one_epoch / 2))


def test_an_online_teacher_under_augmentation_runs_in_the_workers(tiny_zoo, target_task):
    """Two Ray Train workers with the online teacher are trained, under strace, by
    tests/test_no_network.py::test_a_two_worker_distillation_sends_nothing_off_loopback."""
    config = DistillConfig(epochs=1, num_workers=2, augment=True)
    spec = teacher_spec(tiny_zoo / "own-classes")
    data = student_data(target_task, spec, config, None)
    assert data.teacher == spec and data.teacher_logits is None  # the workers run the teacher on each batch
    assert data.cost.shape == (3, 3)  # the cost matrix still comes from the teacher's outputs on the labels


def test_signals_and_a_kill_stop_distillation_and_the_same_command_resumes(ray_session, tiny_zoo, task_path,
                                                                          tmp_path):
    """SIGTERM and then Ctrl-C (SIGINT) stop `selkd distill` in the middle of Ray Train within 10 s (exit 130,
    no half-written result); a SIGKILL leaves it wherever it was. Each time the same command resumes from the
    last checkpoint: no finished epoch is trained again, and one run holds them all. The SIGTERM goes to the
    group of a command that started its own Ray (as `timeout` or Kubernetes send it): that Ray's processes, in
    a group of their own, do not die under it, and none outlives it."""
    epochs = 6
    out = tmp_path / "students"
    runs = out / "runs"
    args = ["distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path), "--out", str(out),
            "--epochs", str(epochs)]
    checkpoints = lambda: len([p for p in runs.glob("*/checkpoint_*") if p.is_dir()])  # noqa: E731
    for signum, at_least, embedded in ((signal.SIGTERM, 1, True), (signal.SIGINT, 2, False)):
        stopped = stop_cli_midway(args, checkpoints, at_least, signum, poll=0.1, embedded=embedded)
        assert stopped.returncode == 130, stopped.stderr[-3000:]
        assert stopped.seconds < 10, f"{signum.name}: stopped after {stopped.seconds:.1f} s"
        assert "interrupted: stopping; what was written is kept" in stopped.stderr
        assert "Traceback" not in stopped.stderr and not list(out.glob("*.metrics.parquet"))
        assert at_least <= stopped.progress < epochs
        assert not ray_processes_started_by(stopped.pid, wait_s=10)  # its own Ray (if any) stopped with it
        assert not still_running(stopped.family, wait_s=10)  # nor anything below it: the raylet's agents too
    killed = stop_cli_midway(args, checkpoints, 3, signal.SIGKILL, poll=0.1)
    assert 3 <= killed.progress < epochs, f"the run should have been killed midway: {killed.stderr[-3000:]}"
    latest = max((p for p in runs.glob("*/checkpoint_*") if p.is_dir()), key=lambda p: p.name)
    kept = torch.load(latest / "student.pt", weights_only=False)["history"]

    resumed = distill(task_path, tiny_zoo / "own-classes", out, DistillConfig(epochs=epochs))
    assert [row.epoch for row in resumed.history] == list(range(epochs))
    assert len(list(runs.iterdir())) == 1  # the same run, resumed, not a new one
    assert checkpoints() == epochs  # one checkpoint per epoch: no finished epoch was trained twice
    assert [row.loss for row in resumed.history[:len(kept)]] == [row["loss"] for row in kept]


def test_an_epoch_charges_its_validation_pass_as_the_budget_plans_it(one_torch_thread, tiny_zoo, target_task):
    """The loop counts what the planner plans: one epoch's FLOPs are its training steps and the validation pass
    after it (each validation image one student forward), so a budget pays for every forward pass."""
    from dataclasses import replace

    from selkd_ray.models.timm_models import count_flops
    from selkd_ray.training.loop import fit_plain, new_student

    config = DistillConfig(epochs=1, seed=0)
    data = student_data(target_task, teacher_spec(tiny_zoo / "own-classes"), config, None)
    trained = fit_plain(data, config)
    assert trained.history[0]["flops"] == trained.flops == epoch_flops(data, config)
    forward = count_flops(new_student(data, config)[0], data.input_size)
    fewer = replace(data, val_images=data.val_images.part(0, 2), val_labels=data.val_labels[:2])
    assert epoch_flops(data, config) - epoch_flops(fewer, config) == forward * (len(data.val_labels) - 2)


def test_a_loss_that_becomes_nan_stops_the_run_naming_the_epoch(one_torch_thread, ray_session, tiny_zoo,
                                                                target_task, tmp_path):
    """Never a "finished" student trained on NaN: teacher outputs gone NaN make the OT term NaN in the first
    epoch, and the loop stops there in one line."""
    from dataclasses import replace

    from selkd_ray.training.loop import fit_plain

    config = DistillConfig(epochs=2)
    data = student_data(target_task, teacher_spec(tiny_zoo / "own-classes"), config, None)
    broken = replace(data, teacher_logits=np.full_like(data.teacher_logits, np.nan))
    with pytest.raises(SelkdError, match=r"^epoch 1: the training loss became nan \(not finite\)"):
        fit_plain(broken, config)
    assert len(fit_plain(data, replace(config, epochs=1)).history) == 1  # the same data, finite: it trains


@pytest.mark.parametrize("keep", ["best", "last"])
def test_a_student_resumed_from_its_checkpoint_ends_where_the_run_straight_through_ends(
        one_torch_thread, ray_session, tiny_zoo, target_task, tmp_path, keep):
    """Issue 44.3: stopped after epoch 2 of 4 and resumed from what its checkpoint holds (weights, optimiser,
    loop state) in loaders and a torch RNG built afresh, as a new worker builds them, a student ends with the
    weights and history of the same run straight through: each epoch's draws depend on (seed, rank, epoch)
    alone, and the cosine schedule on the epoch and step."""
    config = DistillConfig(epochs=4, keep=keep)
    job = plain_job(target_task, tiny_zoo / "own-classes", tmp_path, config, "straight")
    data, student, optimizer, batches = plain_loop(job)
    straight = fit_epochs(student, optimizer, data, config, torch.device("cpu"), *batches)

    class Stop(Exception):
        pass

    saved = {}

    def checkpoint_then_stop(state) -> None:
        if state.epoch == 1:  # the checkpoint of epoch 2, then the stop
            saved.update(state.saved(), model=copy.deepcopy(student.state_dict()),
                         optimizer=copy.deepcopy(optimizer.state_dict()))
            raise Stop

    data, student, optimizer, batches = plain_loop(job)
    with pytest.raises(Stop):
        fit_epochs(student, optimizer, data, config, torch.device("cpu"), *batches, after_epoch=checkpoint_then_stop)
    torch.manual_seed(12345)  # a fresh worker's RNG is wherever it is
    data, student, optimizer, batches = plain_loop(job)
    student.load_state_dict(saved.pop("model"))
    optimizer.load_state_dict(saved.pop("optimizer"))
    resumed = fit_epochs(student, optimizer, data, config, torch.device("cpu"), *batches, LoopState.from_saved(saved))
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in straight.history]
    assert resumed.best_epoch == straight.best_epoch
    assert all(torch.equal(resumed.model[k], straight.model[k]) for k in straight.model)
