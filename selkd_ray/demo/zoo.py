"""The demo zoo: teachers really trained on different subsets and groupings of the digits, two timm architectures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.forward import model_input
from ..models.timm_models import WEIGHTS_FILE, build_model, save_teacher
from ..progress import Step
from ..records import Preprocessing
from .data import DIGIT_NAMES, MNIST_MEAN, MNIST_STD, mnist, pools

ARCHITECTURES = ("test_resnet", "test_efficientnet")


@dataclass(frozen=True)
class TeacherRecipe:
    teacher_id: str
    groups: dict[str, tuple[int, ...]]  # label name -> digits it covers (digits not listed are left out)
    random_labels: bool = False  # labels shuffled: a teacher that learned nothing useful


def digits(*ds: int) -> dict[str, tuple[int, ...]]:
    return {DIGIT_NAMES[d]: (d,) for d in ds}


RECIPES = (
    TeacherRecipe("digits-all", digits(*range(10))),
    TeacherRecipe("digits-3589", digits(3, 5, 8, 9)),
    TeacherRecipe("digits-0to4", digits(0, 1, 2, 3, 4)),
    TeacherRecipe("digits-5to9", digits(5, 6, 7, 8, 9)),
    TeacherRecipe("parity", {"even": (0, 2, 4, 6, 8), "odd": (1, 3, 5, 7, 9)}),
    TeacherRecipe("small-large", {"small": (0, 1, 2, 3, 4), "large": (5, 6, 7, 8, 9)}),
    TeacherRecipe("digits-01", digits(0, 1)),
    TeacherRecipe("digits-17", digits(1, 7)),
    TeacherRecipe("digits-246", digits(2, 4, 6)),
    TeacherRecipe("digits-069", digits(0, 6, 9)),
    TeacherRecipe("loops", {"loop": (0, 6, 8, 9), "no-loop": (1, 2, 3, 4, 5, 7)}),
    TeacherRecipe("random-labels", {"a": (0, 1, 2), "b": (3, 4, 5), "c": (6, 7), "d": (8, 9)}, random_labels=True),
)

# Teachers beyond the demo's twelve, for benchmarks: more label spaces, none equal to a benchmark target's.
MORE_RECIPES = (
    TeacherRecipe("digits-0147", digits(0, 1, 4, 7)),
    TeacherRecipe("digits-02569", digits(0, 2, 5, 6, 9)),
    TeacherRecipe("digits-2357", digits(2, 3, 5, 7)),
    TeacherRecipe("digits-0468", digits(0, 4, 6, 8)),
    TeacherRecipe("digits-19", digits(1, 9)),
    TeacherRecipe("digits-48", digits(4, 8)),
    TeacherRecipe("digits-56", digits(5, 6)),
    TeacherRecipe("digits-1234", digits(1, 2, 3, 4)),
    TeacherRecipe("digits-6789", digits(6, 7, 8, 9)),
    TeacherRecipe("straight-curved", {"straight": (1, 4, 7), "curved": (0, 2, 3, 5, 6, 8, 9)}),
    TeacherRecipe("mod-three", {"remainder-0": (0, 3, 6, 9), "remainder-1": (1, 4, 7), "remainder-2": (2, 5, 8)}),
)


def recipe_data(recipe: TeacherRecipe, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's images from the teacher pool and their labels in the teacher's own label space."""
    images, labels = mnist()
    pool, _ = pools(seed)
    mapping = {d: index for index, group in enumerate(recipe.groups.values()) for d in group}
    keep = pool[np.isin(labels[pool], list(mapping))]
    new_labels = np.array([mapping[d] for d in labels[keep]])
    if recipe.random_labels:
        new_labels = np.random.default_rng(seed).integers(0, len(recipe.groups), len(new_labels))
    return images[keep], new_labels


DIGIT_INPUT = Preprocessing((1, 28, 28), MNIST_MEAN, MNIST_STD)


def train_classifier(architecture: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
                     epochs: int = 4, seed: int = 0, preprocessing: Preprocessing = DIGIT_INPUT) -> torch.nn.Module:
    """Plain supervised training on the digits, by default as they are (28x28 grey)."""
    torch.manual_seed(seed)
    model = build_model(architecture, num_classes, preprocessing.input_size[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x_all = model_input(images, preprocessing, torch.device("cpu"))
    y_all = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            if len(batch) < 2:
                continue
            loss = F.cross_entropy(model(x_all[batch]), y_all[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def build_zoo(zoo_dir: Path, progress: Callable[[object], None] = print, seed: int = 0,
              recipes: tuple[TeacherRecipe, ...] = RECIPES, epochs: int = 4) -> list[Path]:
    """Train and save every recipe not already in `zoo_dir`; returns the teacher folders."""
    folders = []
    for index, recipe in enumerate(recipes):
        folder = zoo_dir / recipe.teacher_id
        folders.append(folder)
        if (folder / WEIGHTS_FILE).is_file():
            continue
        train_teacher(recipe, index, str(folder), epochs, seed)
        progress(Step("zoo", index + 1, len(recipes), f"[zoo {index + 1}/{len(recipes)}] trained {recipe.teacher_id} "
                      f"({ARCHITECTURES[index % len(ARCHITECTURES)]}, {len(recipe.groups)} classes)"))
    return folders


def train_teacher(recipe: TeacherRecipe, index: int, folder: str, epochs: int = 4, seed: int = 0) -> str:
    """Train recipe number `index` (architectures alternate by index) and save it as a teacher folder."""
    images, labels = recipe_data(recipe, seed)
    model = train_classifier(ARCHITECTURES[index % len(ARCHITECTURES)], images, labels, len(recipe.groups),
                             epochs=epochs, seed=seed + index)
    save_teacher(model, Path(folder), tuple(recipe.groups), (1, 28, 28), MNIST_MEAN, MNIST_STD)
    return folder
