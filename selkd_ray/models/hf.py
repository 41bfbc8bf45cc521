"""Everything that touches transformers: image classifiers saved by `save_pretrained`, read as teachers.

An optional extra (`pip install -e .[hf]`). A transformers classifier is seen the way timm models are: pooled
features (the input of its classification head) and one head, so it runs through the one forward path and
every feature- or classifier-based scorer reads it like any other teacher.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..errors import SelkdError, fail
from .timm_models import count_flops
from ..records import Preprocessing, TeacherSpec
from ..io.model_files import CONFIG_FILE, PREPROCESSOR_FILE, read_json_config

PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PASS_THROUGH = (torch.nn.Flatten, torch.nn.Dropout, torch.nn.Identity)


def transformers_module(folder: Path | str):
    """The transformers package, or one line naming the teacher's config and how to install the extra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
    try:
        import transformers
    except ImportError:
        raise fail(str(Path(folder) / CONFIG_FILE), "a transformers image classifier, and transformers is not "
                   "installed; expected the hf extra (pip install -e '.[hf]')") from None
    return transformers


class PooledClassifier(torch.nn.Module):
    """A transformers image classifier as timm shows its models: `pooled(x)` is the input of the
    classification head (flattened), `get_classifier()` the head's one linear layer, `forward` the logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = classification_head(model)
        linears = [m for m in self.head.modules() if isinstance(m, torch.nn.Linear)]
        plain = all(isinstance(m, (torch.nn.Linear, torch.nn.Sequential, *PASS_THROUGH)) for m in self.head.modules())
        self.classifier = linears[-1] if plain and len(linears) == 1 else self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        hook = self.head.register_forward_hook(lambda module, args, output: seen.append(args[0]))
        try:
            self.model(pixel_values=x)
        finally:
            hook.remove()
        return seen[0].flatten(1)

    def get_classifier(self) -> torch.nn.Module:
        return self.classifier


def classification_head(model: torch.nn.Module) -> torch.nn.Module:
    """The module that maps pooled features to logits (`classifier`, the name transformers' image
    classifiers use)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        raise SelkdError(f"{type(model).__name__}: no `classifier` head; expected a transformers image classifier")
    return head


def read_hf_config(folder: Path) -> dict:
    """A transformers classifier's label names (id2label), class count and preprocessing, checked."""
    path = folder / CONFIG_FILE
    config = read_json_config(path)
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise fail(f"{path}: id2label", "missing; expected {index: label name} of the classifier's classes")
    try:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except ValueError:
        raise fail(f"{path}: id2label", "expected integer keys") from None
    generic = all(name == f"LABEL_{i}" for i, name in enumerate(names))  # what transformers fills in
    return {"label_names": tuple(str(i) for i in range(len(names))) if generic else tuple(names),
            "label_names_known": not generic, "num_classes": len(names),
            "architecture": (config.get("architectures") or [config.get("model_type", "")])[0],
            "preprocessing": hf_preprocessing(folder, config)}


def hf_preprocessing(folder: Path, config: dict) -> Preprocessing:
    """The image processor's resize, crop, resample and mean/std as timm's data-config terms."""
    path = folder / PREPROCESSOR_FILE
    processor = read_json_config(path) if path.is_file() else {}
    try:
        size = processor.get("size") or {}
        if isinstance(size, int):  # the older form, which transformers still reads: a square of that side
            size = {"height": size, "width": size}
        side = int(config.get("image_size") or 224)
        if "height" in size:
            height, width = int(size["height"]), int(size["width"])
        else:
            height = width = int(size.get("shortest_edge", side))
        crop_pct = float(processor.get("crop_pct") or 1.0)
        crop = processor.get("crop_size") if processor.get("do_center_crop") else None
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        if isinstance(crop, dict) and "height" in crop:
            crop_pct = min(int(crop["height"]) / height, 1.0)
            height, width = int(crop["height"]), int(crop["width"])
        mean = tuple(map(float, processor.get("image_mean") or IMAGENET_MEAN))
        std = tuple(map(float, processor.get("image_std") or IMAGENET_STD))
        channels = int(config.get("num_channels") or len(mean))
    except (TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        raise fail(str(path), f"expected sizes as integers and mean/std as numbers ({err})") from None
    if min(height, width, channels) < 1 or min(std) <= 0:
        raise fail(str(path), f"expected a positive size and std, got {height}x{width}, std {std}")
    return Preprocessing((channels, height, width), mean, std,
                         PIL_RESAMPLE.get(processor.get("resample"), "bilinear"), crop_pct, "center")


def build_hf_model(folder: Path) -> PooledClassifier:
    """The classifier with random weights, from the folder's config alone (for FLOPs and shapes)."""
    transformers = transformers_module(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model = transformers.AutoModelForImageClassification.from_config(config)
    except (ValueError, KeyError, OSError) as err:
        raise fail(str(folder / CONFIG_FILE), f"transformers cannot build an image classifier from it "
                   f"({str(err).splitlines()[0][:160]})") from None
    return PooledClassifier(model.eval())


def describe_hf(folder: Path, preprocessing: Preprocessing, weights: Path | None = None) -> tuple[int, int]:
    """(parameter count, forward FLOPs per sample) of a transformers classifier, without loading its weights;
    given `weights` (one file; shards are checked when loaded), their header is checked against the model as
    the config builds it, as a timm folder's is: a zero-byte file or another model's weights is an invalid
    teacher when the zoo is indexed, not when a scan has paid to run it."""
    model = build_hf_model(folder)
    if weights is not None:
        check_hf_weights(model.model, weights)
    return sum(p.numel() for p in model.parameters()), count_flops(model, preprocessing.input_size)


def check_hf_weights(model: torch.nn.Module, weights: Path) -> None:
    """A weights file's tensor count against the model's, read from its header: transformers renames
    checkpoint keys as it loads them (and may fuse or tie tensors), so names are its to match, but the number
    of weights is not: at least the model's parameters (tied ones once), at most its whole state dict."""
    from .timm_models import weight_shapes

    held = sum(math.prod(shape) for shape in weight_shapes(weights).values())
    params = sum(p.numel() for p in model.parameters())
    stated = sum(t.numel() for t in model.state_dict().values())
    if not params <= held <= stated:
        raise fail(str(weights), f"does not fit {type(model).__name__} as configured: it holds {held:,} weights, "
                                 f"expected {params:,} (up to {stated:,} with buffers)")


def load_hf_teacher(spec: TeacherSpec) -> PooledClassifier:
    """The classifier with its weights (safetensors, pytorch_model.bin or shards), as transformers loads it."""
    transformers = transformers_module(spec.path)
    try:
        model, info = transformers.AutoModelForImageClassification.from_pretrained(
            spec.path, local_files_only=True, output_loading_info=True)
    except Exception as err:  # transformers raises many types for a bad folder
        raise fail(spec.path, f"transformers cannot load it ({type(err).__name__}: "
                   f"{str(err).splitlines()[0][:200]})") from None
    unfit = [*info.get("missing_keys", ()), *(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ()))]
    if unfit:  # transformers would run them with random weights, with a warning nobody reads
        raise fail(spec.path, f"weights do not fit {type(model).__name__}: tensor '{sorted(unfit)[0]}' missing "
                   f"or of another shape ({len(unfit)} in all)")
    return PooledClassifier(model.eval())
