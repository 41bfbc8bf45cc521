"""Turn stored uint8 images into the tensor a given model expects (channels, size, normalisation)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_model_input(images: np.ndarray | torch.Tensor, input_size: tuple[int, int, int],
                   mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (n, C, H, W) -> float (n, C', H', W'), grey<->RGB converted, resized and normalised."""
    x = torch.as_tensor(images).float().div_(255.0)
    channels, height, width = input_size
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(1, keepdim=True)
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def random_shift(images: torch.Tensor, padding: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each uint8 image (n, C, H, W) moved by up to `padding` pixels in each direction (zero fill): torchvision's
    RandomCrop with padding, one draw per image, from a seeded generator."""
    from torchvision.transforms.v2 import functional as TF

    height, width = images.shape[-2:]
    padded = TF.pad(images, [padding])
    offsets = torch.randint(0, 2 * padding + 1, (len(images), 2), generator=generator)
    return torch.stack([TF.crop(image, int(top), int(left), height, width)
                        for image, (top, left) in zip(padded, offsets)])
