"""Ray Train distillation: checkpoints, resume after a kill, early stopping, the FLOPs budget, N workers,
an online teacher under augmentation, and a student folder that joins the zoo."""
import signal

import numpy as np
import pytest
import torch
from helpers.killing import stop_cli_midway

from selkd_ray.api import distill, index_zoo
from selkd_ray.config import DistillConfig
from selkd_ray.training.student_data import student_data, teacher_spec
from selkd_ray.errors import SelkdError
from selkd_ray.training.loop import epoch_flops


def test_distillation_reports_a_checkpoint_and_saves_a_teacher_folder(ray_session, tiny_zoo, target_task, tmp_path):
    config = DistillConfig(epochs=2, seed=0)
    result = distill(target_task, tiny_zoo / "own-classes", tmp_path, config, name="student")
    assert [row.epoch for row in result.history] == [0, 1]
    assert all(np.isfinite(row.loss) for row in result.history)
    assert 0.0 <= result.test_accuracy <= 1.0 and result.stopped == ""
    checkpoints = [c for c in (tmp_path / "runs").glob("*/checkpoint_*") if c.is_dir()]
    assert len(checkpoints) == 2 and all((c / "student.pt").is_file() for c in checkpoints)
    assert (result.student_dir / "model.safetensors").is_file()
    assert result.curve_path.stat().st_size > 5_000
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1  # the teacher's outputs, computed once
    specs, _ = index_zoo(tmp_path, tmp_path / "catalogue.parquet")
    student = next(s for s in specs if s.teacher_id == "student")
    assert student.label_names == target_task.label_names and not student.error

    again = distill(target_task, tiny_zoo / "own-classes", tmp_path, config, name="student")
    assert again.run_name == result.run_name and again.history == result.history  # the finished run, reused


def test_early_stopping_keeps_the_best_epoch(ray_session, tiny_zoo, target_task, tmp_path):
    # learning rate 0: only batch-norm statistics move, so validation accuracy soon stops improving
    frozen = DistillConfig(epochs=8, learning_rate=0.0, weight_decay=0.0, patience=1)
    result = distill(target_task, tiny_zoo / "own-classes", tmp_path, frozen, name="frozen")
    accuracies = [row.val_accuracy for row in result.history]
    assert result.stopped.startswith("early stop") and len(accuracies) < 8
    assert result.best_epoch == int(np.argmax(accuracies)) and len(accuracies) - 1 - result.best_epoch == 1
    assert [row.best for row in result.history].count(True) == 1
    again = distill(target_task, tiny_zoo / "own-classes", tmp_path, frozen, name="frozen")
    assert again.history == result.history and again.stopped == result.stopped  # stays stopped: no extra epoch


def test_flops_budget_stops_training_and_is_reported(ray_session, tiny_zoo, target_task, tmp_path):
    spec = teacher_spec(tiny_zoo / "own-classes")
    config = DistillConfig(epochs=6)
    one_epoch = epoch_flops(student_data(target_task, spec, config, None), config)
    result = distill(target_task, tiny_zoo / "own-classes", tmp_path, DistillConfig(epochs=6, max_flops=2.5 * one_epoch))
    assert len(result.history) == 2 and result.flops <= 2.5 * one_epoch
    assert result.stopped.startswith("FLOPs budget")
    more = distill(target_task, tiny_zoo / "own-classes", tmp_path, DistillConfig(epochs=6, max_flops=4.5 * one_epoch))
    assert more.run_name == result.run_name  # the budget is a limit, not an input: the same run continues
    assert [row.loss for row in more.history[:2]] == [row.loss for row in result.history]  # not retrained
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
    last checkpoint: no finished epoch is trained again, and one run holds them all."""
    epochs = 6
    out = tmp_path / "students"
    runs = out / "runs"
    args = ["distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path), "--out", str(out),
            "--epochs", str(epochs)]
    checkpoints = lambda: len([p for p in runs.glob("*/checkpoint_*") if p.is_dir()])  # noqa: E731
    for signum, at_least in ((signal.SIGTERM, 1), (signal.SIGINT, 2)):
        stopped = stop_cli_midway(args, checkpoints, at_least, signum, poll=0.1)
        assert stopped.returncode == 130, stopped.stderr[-3000:]
        assert stopped.seconds < 10, f"{signum.name}: stopped after {stopped.seconds:.1f} s"
        assert "interrupted: stopping; what was written is kept" in stopped.stderr
        assert "Traceback" not in stopped.stderr and not list(out.glob("*.metrics.parquet"))
        assert at_least <= stopped.progress < epochs
    killed = stop_cli_midway(args, checkpoints, 3, signal.SIGKILL, poll=0.1)
    assert 3 <= killed.progress < epochs, f"the run should have been killed midway: {killed.stderr[-3000:]}"
    latest = max((p for p in runs.glob("*/checkpoint_*") if p.is_dir()), key=lambda p: p.name)
    kept = torch.load(latest / "student.pt", weights_only=False)["history"]

    resumed = distill(task_path, tiny_zoo / "own-classes", out, DistillConfig(epochs=epochs))
    assert [row.epoch for row in resumed.history] == list(range(epochs))
    assert len(list(runs.iterdir())) == 1  # the same run, resumed, not a new one
    assert checkpoints() == epochs  # one checkpoint per epoch: no finished epoch was trained twice
    assert [row.loss for row in resumed.history[:len(kept)]] == [row["loss"] for row in kept]


def test_an_epoch_charges_its_validation_pass_as_the_budget_plans_it(tiny_zoo, target_task):
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
