"""Stratified, seeded probe sets: the small labelled sample every teacher is run on."""
from __future__ import annotations

import numpy as np

from ..records import ProbeSet, Task, content_hash


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to `per_class` indices of each label, drawn without replacement; sorted for a stable order.

    Each class follows one seeded permutation and takes its first `per_class` members, so probes of growing
    size with the same seed are nested: a halving round's probe contains the previous round's.
    """
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, int(label)]).permutation(len(members))
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def make_probe(task: Task, per_class: int, seed: int = 0) -> ProbeSet:
    """Probe = stratified sample of the task's labelled training split, identified by a hash of its content."""
    train = task.indices("train")
    rows = train[stratified_indices(task.labels[train], per_class, seed)]  # chosen first: only these are decoded
    images, labels = task.rows(rows), task.labels[rows]
    return ProbeSet(images, labels, task.label_names, content_hash(images, labels, "\n".join(task.label_names)))


def halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, class-balanced index sets for cross-fitting (fit on one, score on the other)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = (len(members) + 1) // 2
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))
