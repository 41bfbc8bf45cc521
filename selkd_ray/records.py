"""Records passed between layers: a teacher spec, a task, a probe set, one teacher's predictions."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How images become a model's input, in timm's data-config terms (what `create_transform` takes)."""

    input_size: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0  # resize to size / crop_pct, then crop the centre: 1.0 keeps the whole image
    crop_mode: str = "center"

    @property
    def key(self) -> str:
        """What decides the input tensor: part of the prediction cache key."""
        return (f"{'x'.join(map(str, self.input_size))}|{self.mean}|{self.std}|{self.interpolation}|"
                f"{self.crop_pct:g}|{self.crop_mode}")


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher of the zoo, as the catalogue knows it."""

    teacher_id: str  # its folder's path inside the zoo (org/name), or a cache's repo id; kept when it moves
    path: str  # folder holding the weights + config.json
    architecture: str  # timm architecture name (a transformers class name for library "transformers")
    content_hash: str  # sha256 over its weights and config files: a changed file is a new teacher
    label_names: tuple[str, ...]  # the teacher's own label space
    input_size: tuple[int, int, int]  # (channels, height, width) the teacher expects
    mean: tuple[float, ...]  # per-channel normalisation
    std: tuple[float, ...]
    param_count: int = 0
    flops_per_sample: int = 0  # forward FLOPs for one input
    error: str = ""  # non-empty: the teacher could not be indexed
    interpolation: str = "bilinear"  # with crop_pct and crop_mode: timm's resolved data config
    crop_pct: float = 1.0
    crop_mode: str = "center"
    library: str = "timm"  # "timm" or "transformers": who reads the folder
    revision: str = ""  # the Hugging Face cache revision it was read at
    label_names_known: bool = True  # False: "0".."C-1" stand in; label-name scorers leave the teacher out

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def warning(self) -> str:
        """What a person should know before trusting this teacher's scores ('' when nothing)."""
        if self.label_names_known or self.error:
            return ""
        return (f"{self.teacher_id}: no label names in its config and no class table timm ships for "
                f"{self.num_classes} classes; named '0'..'{self.num_classes - 1}', the label-name scorers "
                "(semantic, ot-semantic) leave it out")

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.input_size, self.mean, self.std, self.interpolation, self.crop_pct, self.crop_mode)

    @property
    def preprocessing_key(self) -> str:
        """What decides the teacher's input tensor: part of the prediction cache key."""
        return self.preprocessing.key

    @property
    def config_hash(self) -> str:
        """What the config decides about the outputs beyond the weights: architecture and label names."""
        return content_hash(self.architecture, "\n".join(self.label_names))


def image_shapes(images: "np.ndarray | StoredImages", rows: np.ndarray) -> np.ndarray:
    """(len(rows), 3): these rows' (C, H, W), without decoding stored images or copying in-memory ones."""
    if not isinstance(images, np.ndarray):
        return np.asarray(images.shapes)[rows]
    if images.dtype == object:
        return np.array([images[row].shape for row in rows], dtype=np.int64).reshape(-1, 3)
    return np.tile(np.array(images.shape[1:], dtype=np.int64), (len(rows), 1))


def take_rows(images: "np.ndarray | StoredImages", rows: np.ndarray) -> np.ndarray:
    """These rows' images: indexed in memory, decoded from their files when stored."""
    rows = np.asarray(rows, dtype=np.int64)
    return images[rows] if isinstance(images, np.ndarray) else images.take(rows)


class StoredImages(Protocol):
    """A task's images kept as references (`io.task_images.ImageColumn`): indexing decodes those rows alone."""

    shapes: np.ndarray  # (n, 3): each image's (C, H, W)
    hashes: np.ndarray  # (n,) S64: each image's content hash

    def __len__(self) -> int: ...
    def __getitem__(self, index) -> np.ndarray: ...
    def take(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Task:
    """A labelled image task; label -1 means unlabelled. `images` is uint8 (n, C, H, W) when they share one
    shape, a 1-D object array of (C, H, W) images of any size, grey or RGB (`ragged`), or, for a task read
    from disk, `StoredImages`: references that decode only the rows asked for. Code that needs pixels asks for
    rows (`rows`, `split`), never for the whole task."""

    name: str
    images: np.ndarray | StoredImages
    labels: np.ndarray
    splits: np.ndarray  # one of train / val / test / unlabelled per image
    label_names: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # one line per image left out when the task was read (undecodable, empty)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """These rows' images, decoded now when the task is stored."""
        return take_rows(self.images, rows)

    def indices(self, *splits: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.splits, list(splits)))

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.indices(name)
        return self.rows(rows), self.labels[rows]

    @property
    def shapes(self) -> np.ndarray:
        """(n, 3): each image's (C, H, W), known without decoding a stored task."""
        return image_shapes(self.images, np.arange(len(self.labels)))

    @cached_property
    def row_hashes(self) -> np.ndarray:
        """Each image's content hash: the same for an image in memory and the same image read from disk."""
        if not isinstance(self.images, np.ndarray):
            return np.asarray(self.images.hashes, dtype="S64")
        return np.array([content_hash(np.ascontiguousarray(im)) for im in self.images], dtype="S64")

    def rows_hash(self, rows: np.ndarray, *extra: object) -> str:
        """One key for these rows' images (and `extra`), without decoding them."""
        return content_hash(self.row_hashes[np.asarray(rows, dtype=np.int64)], *extra)

    def subset(self, rows: np.ndarray) -> TaskRows:
        """These rows, decoded only when indexed."""
        return TaskRows(self.images, np.asarray(rows, dtype=np.int64))

    @property
    def content_hash(self) -> str:
        return self.rows_hash(np.arange(len(self.labels)), self.labels, self.splits.astype(str),
                              "\n".join(self.label_names))


@dataclass(frozen=True)
class TaskRows:
    """Some rows of a task, decoded a slice at a time when indexed: the forward path and the resizer take it as
    they take an array, so a student pool of 50,000 stored images is never decoded whole."""

    images: np.ndarray | StoredImages
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return take_rows(self.images, np.atleast_1d(self.rows[index]))

    @property
    def shapes(self) -> np.ndarray:
        return image_shapes(self.images, self.rows)


@dataclass(frozen=True)
class ProbeSet:
    """The stratified, seeded sample of the task's labelled training split that teachers are run on."""

    images: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    probe_hash: str = field(default="")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Predictions:
    """One teacher's outputs on a probe set: softmax probabilities (n, C_T), penultimate features (n, d),
    and its linear classifier's weight rows (C_T, d) where it has one (the `prototype` cost needs them)."""

    probs: np.ndarray
    features: np.ndarray
    seconds: float = 0.0
    classifier: np.ndarray | None = None


@dataclass(frozen=True)
class Evidence:
    """All a scorer or cost builder may look at for one teacher on one probe: pure arrays, no models.

    probs (n, C_T), features (n, d), labels (n,) in [0, C_S); optional classifier rows (C_T, d), unit
    text embeddings of the teacher's (C_T, e) and the target's (C_S, e) label names, and the teacher's
    parameter count and forward FLOPs per sample.
    """

    probs: np.ndarray | None
    features: np.ndarray | None
    labels: np.ndarray
    num_target_classes: int
    classifier: np.ndarray | None = None
    teacher_label_embeddings: np.ndarray | None = None
    target_label_embeddings: np.ndarray | None = None
    param_count: int = 0  # the teacher's size, for the static priors (0: unknown)
    flops_per_sample: int = 0

    def subset(self, index: np.ndarray) -> "Evidence":
        """The same teacher on a subset of the probe samples (for cross-fitting and reordering)."""
        take = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(self, probs=take(self.probs), features=take(self.features), labels=self.labels[index])


def content_hash(*parts: object) -> str:
    """sha256 over arrays and strings, so equal content gives an equal key whatever its origin."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray) and part.dtype == object:  # ragged images: each one's shape and bytes
            digest.update(f"ragged{part.shape}".encode())
            for item in part:
                digest.update(content_hash(item).encode())
        elif isinstance(part, np.ndarray):
            digest.update(str(part.dtype).encode() + str(part.shape).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Assessment:
    """One teacher assessed on a probe: every requested score, its conditional cost matrix to the target's
    classes, and the label plan in words."""

    scores: dict[str, float]
    cost_matrix: np.ndarray  # (C_T, C_S)
    label_plan: str


@dataclass(frozen=True)
class TeacherResult:
    """What running one teacher on the probe yields: its predictions, or the error that stopped it."""

    teacher_id: str
    predictions: Predictions | None
    error: str = ""
    node: str = ""  # address of the node that ran it (set by the Ray layer)
    skipped: bool = False  # not run: the budget was spent before its turn
    assessment: Assessment | None = None  # when the runner assessed it
    forward_ran: bool = False  # the teacher's forward pass ran (a teacher failing to load cost no FLOPs)
