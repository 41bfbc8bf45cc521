"""Zoo adapters: a folder written by timm's own saver is a teacher as it is; the packaged ImageNet teacher."""
import json

import numpy as np
import timm
import torch
from timm.models import save_for_hf

from selkd_ray.api import index_zoo
from selkd_ray.demo.pretrained import INPUT_SIZE, TEACHER_ID, save_imagenet_teacher
from selkd_ray.errors import SelkdError
from selkd_ray.models.forward import ForwardPath, teacher_predictions
from selkd_ray.models.timm_models import load_weights_in_order

CPU = torch.device("cpu")


def test_a_folder_written_by_timm_save_for_hf_is_a_teacher(tmp_path):
    model = timm.create_model("test_resnet", num_classes=4, in_chans=1)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (1, 28, 28), "mean": (0.5,), "std": (0.25,)}
    save_for_hf(model, str(tmp_path / "zoo" / "plain-timm"), model_config={"label_names": ["a", "b", "c", "d"]},
                model_args={"in_chans": 1}, safe_serialization=True)
    config = json.loads((tmp_path / "zoo" / "plain-timm" / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 4  # timm's own layout
    specs, _ = index_zoo(tmp_path / "zoo")
    assert len(specs) == 1 and not specs[0].error
    spec = specs[0]
    assert spec.label_names == ("a", "b", "c", "d") and spec.input_size == (1, 28, 28)
    assert spec.mean == (0.5,) and spec.std == (0.25,) and spec.flops_per_sample > 0
    images = np.random.default_rng(0).integers(0, 255, (5, 1, 28, 28), dtype=np.uint8)
    probs = teacher_predictions(spec, ForwardPath.for_teacher(spec, CPU), images).probs
    assert probs.shape == (5, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_the_packaged_imagenet_teacher_runs_on_grey_digits(tmp_path, target_task):
    save_imagenet_teacher(tmp_path / "zoo" / TEACHER_ID)
    (spec,), _ = index_zoo(tmp_path / "zoo")
    assert spec.architecture == "efficientnet_lite0" and spec.num_classes == 1000 and not spec.error
    assert spec.input_size == INPUT_SIZE and spec.label_names[:2] == ("tench", "goldfish")
    assert len(set(spec.label_names)) == 1000
    images, _ = target_task.split("train")
    probs = teacher_predictions(spec, ForwardPath.for_teacher(spec, CPU), images[:8]).probs
    assert probs.shape == (8, 1000)
    assert probs.max() > 5 / 1000  # real weights: far from the uniform output of an untrained head


def test_weights_of_the_wrong_shape_are_refused_by_name(tmp_path):
    import torch

    torch.save({"stem.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    model = timm.create_model("test_resnet", num_classes=2)
    try:
        load_weights_in_order(model, tmp_path / "bad.pth")
    except SelkdError as err:
        assert str(err).startswith(f"{tmp_path / 'bad.pth'}: has 1 tensors")
    else:
        raise AssertionError("expected a SelkdError")
