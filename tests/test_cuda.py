"""On a CUDA GPU (skipped elsewhere; bench/gpu.py runs these): teachers, the OT loss and a student step on the
device give what the CPU gives, with mixed precision, and every result reaches the host."""
import numpy as np
import pytest
import torch

from selkd_ray.config import DistillConfig
from selkd_ray.models.forward import ForwardPath, autocast_dtype, teacher_predictions
from selkd_ray.training.losses import sinkhorn_distillation_loss
from selkd_ray.records import ProbeSet
from selkd_ray.scoring.runner import TeacherRunner
from selkd_ray.training.data import StudentData
from selkd_ray.training.loop import fit_plain
from selkd_ray.training.student_data import teacher_spec

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda", 0)


def test_a_runner_on_cuda_scores_teachers_as_the_cpu_does(tiny_zoo, target_task):
    images, labels = target_task.split("train")
    probe = ProbeSet(images[:64], labels[:64], target_task.label_names, "p")
    for folder in sorted(p for p in tiny_zoo.iterdir() if p.is_dir()):
        spec = teacher_spec(folder)
        on_gpu = TeacherRunner(assigned_gpus=1)(spec, probe)
        assert not on_gpu.error, on_gpu.error  # the old path failed every teacher on classifier rows
        on_cpu = teacher_predictions(spec, ForwardPath.for_teacher(spec, torch.device("cpu")), probe.images)
        assert on_gpu.predictions.classifier.dtype == np.float32
        assert np.allclose(on_gpu.predictions.classifier, on_cpu.classifier)
        # autocast in bfloat16/float16: close to float32, not equal
        assert np.abs(on_gpu.predictions.probs - on_cpu.probs).max() < 0.05
        assert (on_gpu.predictions.probs.argmax(1) == on_cpu.probs.argmax(1)).mean() > 0.9


def test_mixed_precision_is_chosen_for_the_device():
    assert autocast_dtype(CUDA) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert autocast_dtype(torch.device("cpu")) is None


@pytest.mark.parametrize("method", ["sinkhorn", "log_sinkhorn"])
def test_the_ot_loss_runs_on_the_gpu(method):
    generator = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(32, 10, generator=generator), torch.randn(32, 4, generator=generator)
    cost = torch.rand(10, 4, generator=generator)
    on_cpu = sinkhorn_distillation_loss(teacher, student, cost, method=method)
    student_gpu = student.to(CUDA).requires_grad_()
    value = sinkhorn_distillation_loss(teacher.to(CUDA), student_gpu, cost.to(CUDA), method=method)
    value.backward()
    assert value.device.type == "cuda" and torch.isfinite(student_gpu.grad).all()
    assert float(value.detach()) == pytest.approx(float(on_cpu), rel=1e-3)


def test_a_student_trains_on_the_gpu(target_task, tiny_zoo):
    from selkd_ray.training.student_data import student_data

    spec = teacher_spec(tiny_zoo / "own-classes")
    config = DistillConfig(epochs=2, augment=True)  # the teacher runs online, on the device
    data: StudentData = student_data(target_task, spec, config, np.ones((3, 3)) - np.eye(3))
    trained = fit_plain(data, config, device="cuda")
    assert len(trained.history) == 2 and trained.history[-1]["val_accuracy"] > 0.5
    assert all(tensor.device.type == "cpu" for tensor in trained.model.values())
