"""Training-time augmentation of stored uint8 images (the model's input itself comes from `forward.model_input`)."""
from __future__ import annotations

import torch


def random_shift(images: torch.Tensor, padding: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each uint8 image (n, C, H, W) moved by up to `padding` pixels in each direction (zero fill): torchvision's
    RandomCrop with padding, one draw per image, from a seeded generator."""
    from torchvision.transforms.v2 import functional as TF

    height, width = images.shape[-2:]
    padded = TF.pad(images, [padding])
    offsets = torch.randint(0, 2 * padding + 1, (len(images), 2), generator=generator)
    return torch.stack([TF.crop(image, int(top), int(left), height, width)
                        for image, (top, left) in zip(padded, offsets)])
