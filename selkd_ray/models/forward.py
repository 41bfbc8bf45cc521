"""The one forward path: the only code that runs a teacher (and evaluates a student) on images.

Its transform is timm's own (`create_transform` over the model's resolved data config: input size,
interpolation, crop_pct, mean/std), applied to whole batches on the model's device, so resizing runs on the GPU
rather than on the actor's one CPU thread. On CUDA it runs under autocast (bfloat16 where the device supports
it, else float16) in channels_last, with pinned host memory and non-blocking copies, and halves its batch when
the device runs out of memory. Every tensor reaches the host through `to_host`, and every batch reaches the
device through `to_device`: one place for each transfer.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..errors import SelkdError
from ..records import Predictions, Preprocessing, TeacherSpec

CPU_BATCH = 256
CUDA_BATCH = 512  # halved on out-of-memory until a batch fits


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """A device tensor as a float32 host array: the one way outputs leave the device."""
    return tensor.detach().float().cpu().numpy()


def to_device(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device`: through pinned memory with a non-blocking copy on CUDA, as is on the CPU."""
    tensor = torch.as_tensor(batch)
    if device.type != "cuda":
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def host_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the host (best-epoch snapshots, results handed back)."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device` (channels_last on CUDA, which convolutions prefer under autocast)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


@dataclass(frozen=True)
class DeviceChoice:
    """Where a worker runs, and the one-line warning when it was given GPUs that torch cannot use."""

    device: torch.device
    warning: str = ""


def choose_device(assigned_gpus: int | None = None) -> DeviceChoice:
    """`assigned_gpus`: how many GPUs the scheduler gave this worker (None: not scheduled, use CUDA if present).

    A worker given a GPU on a node where torch sees no CUDA (a node that declares GPUs it lacks, or a CPU
    build of torch) falls back to the CPU and says so; one given none stays on the CPU."""
    if assigned_gpus is None:
        return DeviceChoice(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if assigned_gpus == 0:
        return DeviceChoice(torch.device("cpu"))
    if torch.cuda.is_available():
        return DeviceChoice(torch.device("cuda", 0))  # the scheduler's GPU is the only one this worker sees
    return DeviceChoice(torch.device("cpu"), f"this node declared {assigned_gpus:g} GPU(s) for the worker but torch "
                                             "sees no CUDA device: running on the CPU")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where the CUDA device supports it, else float16; None (float32) off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@functools.lru_cache(maxsize=64)
def batch_transform(preprocessing: Preprocessing):
    """timm's eval transform for this preprocessing, as a callable on float batches in [0, 1]."""
    from timm.data import create_transform  # here, not at import: a scan answered by its cache loads no timm

    steps = create_transform(input_size=preprocessing.input_size, interpolation=preprocessing.interpolation,
                             mean=preprocessing.mean, std=preprocessing.std, crop_pct=preprocessing.crop_pct,
                             crop_mode=preprocessing.crop_mode, is_training=False).transforms

    def apply(x: torch.Tensor) -> torch.Tensor:
        for step in steps:  # Resize, CenterCrop, MaybeToTensor (a no-op on tensors), Normalize: batched
            x = step(x)
        return x

    return apply


def model_input(images: np.ndarray | torch.Tensor, preprocessing: Preprocessing, device: torch.device,
                transform=None) -> torch.Tensor:
    """uint8 (n, C, H, W) host images -> the model's normalised input on `device` (grey <-> RGB converted
    first, as timm's loaders do with PIL's convert). Ragged images (a 1-D object array of (C, H, W) images of
    any size) are transformed a group of one shape at a time, and come back in their order."""
    if isinstance(images, np.ndarray) and images.dtype == object:
        return ragged_input(images, preprocessing, device, transform)
    x = to_device(images, device).float().div_(255.0)
    channels = preprocessing.input_size[0]
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(1, keepdim=True)
    return (transform or batch_transform(preprocessing))(x)


def ragged_input(images: np.ndarray, preprocessing: Preprocessing, device: torch.device, transform=None):
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape, []).append(index)
    out = torch.empty((len(images), *preprocessing.input_size), device=device)
    for members in groups.values():
        batch = np.stack([images[i] for i in members])
        out[torch.as_tensor(members, device=device)] = model_input(batch, preprocessing, device, transform)
    return out


def at_size(images: np.ndarray, input_size: tuple[int, int, int]) -> np.ndarray:
    """Images of any size and mode as one uint8 (n, C, H, W) array at `input_size`, resized as timm's eval
    transform resizes them (the whole image, bilinear with antialiasing): the student's fixed-size input."""
    identity = Preprocessing(tuple(input_size), (0.0,) * input_size[0], (1.0,) * input_size[0])
    out = np.empty((len(images), *input_size), np.uint8)
    for start in range(0, len(images), CPU_BATCH):
        x = model_input(images[start:start + CPU_BATCH], identity, torch.device("cpu"))
        out[start:start + CPU_BATCH] = np.clip(np.rint(to_host(x) * 255.0), 0, 255).astype(np.uint8)
    return out


class ForwardPath:
    """A model in eval mode on one device with its preprocessing: logits and features of image batches."""

    def __init__(self, model: torch.nn.Module, preprocessing: Preprocessing, device: torch.device,
                 batch_size: int | None = None) -> None:
        self.device, self.preprocessing = device, preprocessing
        self.amp = autocast_dtype(device)
        self.model = place(model, device).eval()
        self.batch_size = batch_size or (CUDA_BATCH if device.type == "cuda" else CPU_BATCH)
        self.transform = batch_transform(preprocessing)

    @classmethod
    def for_teacher(cls, spec: TeacherSpec, device: torch.device) -> "ForwardPath":
        if spec.library == "transformers":
            from .hf import load_hf_teacher

            return cls(load_hf_teacher(spec), spec.preprocessing, device)
        from .timm_models import load_teacher  # as create_transform: only when a teacher runs

        return cls(load_teacher(spec), spec.preprocessing, device)

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def prepare(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = model_input(images, self.preprocessing, self.device, self.transform)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    @torch.no_grad()
    def run(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled features) of one batch, on the device."""
        with self.autocast():
            x = self.prepare(images)
            if hasattr(self.model, "pooled"):  # a transformers classifier (models/hf.PooledClassifier)
                pooled = self.model.pooled(x)
            else:
                pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            return self.model.get_classifier()(pooled), pooled

    def logits(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Logits of one batch on the device, in float32 (an online teacher's targets, say)."""
        return self.run(images)[0].float()

    def batches(self, images: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, features) per batch of `images`, halving the batch on CUDA out-of-memory."""
        start = 0
        while start < len(images):
            try:
                outputs = self.run(images[start:start + self.batch_size])
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size //= 2
                continue
            start += self.batch_size
            yield outputs

    def outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n, C), features (n, d)) on the host, float32."""
        logits, features = [], []
        for batch_logits, batch_features in self.batches(images):
            logits.append(to_host(batch_logits))
            features.append(to_host(batch_features))
        return np.concatenate(logits), np.concatenate(features)

    def classifier_rows(self) -> np.ndarray | None:
        """The weight rows (C, d) of the classifier where it is one linear layer, else None."""
        head = self.model.get_classifier()
        if isinstance(head, torch.nn.Linear):
            return to_host(head.weight).copy()
        return None


def teacher_predictions(spec: TeacherSpec, forward: ForwardPath, images: np.ndarray) -> Predictions:
    """A teacher's softmax outputs, features and classifier rows on `images`; non-finite outputs are an error."""
    logits, features = forward.outputs(images)
    if not (np.isfinite(logits).all() and np.isfinite(features).all()):
        raise SelkdError(f"{spec.path}: teacher gives non-finite outputs on the probe set")
    return Predictions(probs=softmax(logits), features=features, classifier=forward.classifier_rows())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32."""
    return torch.softmax(torch.from_numpy(logits).double(), 1).numpy().astype(np.float32)
