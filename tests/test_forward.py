"""The one forward path, without Ray: timm's own preprocessing, host conversion, device choice, the loss's device."""
import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from selkd_ray.models.forward import ForwardPath, choose_device, model_input, teacher_predictions, to_host
from selkd_ray.training.losses import sinkhorn_distillation_loss
from selkd_ray.models.timm_models import build_model, save_teacher
from selkd_ray.records import Preprocessing
from selkd_ray.training.data import StudentData
from selkd_ray.training.loop import evaluate
from selkd_ray.zoo.index import index_teacher

CPU = torch.device("cpu")


def grey_digits(n: int = 4) -> np.ndarray:
    images = np.random.default_rng(0).integers(0, 255, (n, 1, 28, 28), dtype=np.uint8)
    images[:, :, 8:20, 8:20] = 255  # a bright centre, so a centre crop changes what the model sees
    return images


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("crop_pct", [0.5, 1.0])
def test_the_batched_input_is_timms_own_per_image_transform(interpolation, crop_pct):
    """Our batch on the device against timm's create_transform on each PIL image (grey converted to RGB, as
    timm's loaders do): the same pixels within resampling noise, and far from them with another crop_pct."""
    images = grey_digits()
    prep = Preprocessing((3, 32, 32), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), interpolation, crop_pct)
    reference = create_transform(input_size=prep.input_size, interpolation=interpolation, mean=prep.mean,
                                 std=prep.std, crop_pct=crop_pct)
    expected = torch.stack([reference(Image.fromarray(image[0]).convert("RGB")) for image in images])
    ours = model_input(images, prep, CPU)
    other_crop = model_input(images, Preprocessing(prep.input_size, prep.mean, prep.std, interpolation,
                                                   1.5 - crop_pct), CPU)
    assert ours.shape == expected.shape == (4, 3, 32, 32)
    assert float((ours - expected).abs().mean()) < 0.05
    assert float((other_crop - expected).abs().mean()) > 0.5


def test_a_teacher_folder_keeps_timms_interpolation_and_crop(tmp_path):
    """crop_pct and interpolation from the folder's pretrained_cfg reach the spec and the cache key."""
    model = build_model("test_resnet", 3, 1)
    save_teacher(model, tmp_path / "t", ("a", "b", "c"), (1, 28, 28), (0.5,), (0.25,), "bicubic", 0.75)
    spec, _, _ = index_teacher(tmp_path / "t")
    assert not spec.error
    assert (spec.interpolation, spec.crop_pct, spec.crop_mode) == ("bicubic", 0.75, "center")
    assert "bicubic" in spec.preprocessing_key and "0.75" in spec.preprocessing_key
    forward = ForwardPath.for_teacher(spec, CPU)
    predictions = teacher_predictions(spec, forward, grey_digits())
    assert predictions.probs.shape == (4, 3) and predictions.probs.dtype == np.float32
    # classifier rows come back to the host as float32 copies of the head's weights
    assert predictions.classifier.dtype == np.float32
    assert np.array_equal(predictions.classifier, model.get_classifier().weight.detach().numpy())


def test_host_conversion_gives_float32_arrays_from_any_precision():
    half = torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16)
    host = to_host(half)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32 and host.tolist() == [[1.5, -2.0]]


def test_a_worker_given_a_gpu_torch_cannot_see_falls_back_to_the_cpu_with_a_warning():
    assert choose_device(0).device == CPU and not choose_device(0).warning
    given = choose_device(1)
    if torch.cuda.is_available():
        assert given.device.type == "cuda" and not given.warning
    else:
        assert given.device == CPU
        assert "declared 1 GPU(s)" in given.warning and "\n" not in given.warning


@pytest.mark.parametrize("method", ["sinkhorn", "log_sinkhorn"])
def test_the_ot_loss_keeps_every_tensor_on_the_students_device(method):
    """With another default device (as CUDA students see: POT's plain solver made its scaling vectors on the
    default device, the CPU, beside a CUDA kernel), the loss still runs on the student's device."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(8, 5, generator=generator)
    student = torch.randn(8, 3, generator=generator, requires_grad=True)
    cost = torch.rand(5, 3, generator=generator)
    expected = sinkhorn_distillation_loss(teacher, student, cost, method=method)
    torch.set_default_device("meta")
    try:
        value = sinkhorn_distillation_loss(teacher, student, cost, method=method)
        value.backward()
    finally:
        torch.set_default_device(None)
    assert value.device == CPU and student.grad.device == CPU
    assert torch.isfinite(student.grad).all()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_a_student_is_evaluated_through_the_forward_path():
    images = grey_digits(40)
    labels = np.arange(40) % 3
    torch.manual_seed(0)
    student = build_model("test_efficientnet", 3, 1).eval()
    data = StudentData(images, labels, None, None, images, labels, 3, (1, 28, 28), (0.5,), (0.25,))
    with torch.no_grad():
        direct = student((torch.from_numpy(images).float() / 255 - 0.5) / 0.25).argmax(1).numpy()
    assert evaluate(student, data, images, labels) == pytest.approx(float((direct == labels).mean()))
