"""Which of the target's classes each teacher knows, by the evidence of its outputs on the labelled images, and
the fewest teachers that together know them all. Pure: no Ray, no models.

A teacher knows a target class c when its prediction, carried onto the target's labels through its cost matrix,
puts its mass on c for the images of c: its *recall* of c,

    r_k(c) = mean over labelled images x of class c of  q_k(c | x),   q_k(. | x) = p_k(. | x) P_k

with P_k[z, y] the teacher-to-target mapping the cost matrix encodes (`mapping`: for the conditional cost,
P(y | z) itself). A teacher that says nothing of c (its images spread over classes other target classes share)
recalls it at about the class's share; one that knows it, near 1. A specialist carries knowledge only for its
own classes, so where no single teacher recalls every class (`covers`), a mixture chosen greedily to cover
them (`covering_members`) is what knowledge amalgamation would distil (issue 42).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scoring.costs import FLOOR

COVERED = 0.6  # a class is known when the teacher recalls it at >= this (provisional: not chosen on data; the
#               faculty selection half at 20 labels, README, ran at this value only)


def mapping(cost: np.ndarray) -> np.ndarray:
    """P[z, y]: row-normalised FLOOR ** M, the inverse of the conditional cost's -log P / log(1/FLOOR) (exactly
    P(y | z) for that cost; for any other cost a soft mapping of the same order)."""
    weights = np.power(FLOOR, np.asarray(cost, dtype=np.float64))
    return weights / weights.sum(1, keepdims=True)


def carried(probs: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(n, C_S): each image's teacher prediction carried onto the target's labels."""
    return np.asarray(probs, dtype=np.float64) @ mapping(cost)


def class_recall(probs: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(C_S,) r_k(c) over the labelled images (labels >= 0); NaN for a class with no labelled image."""
    labelled = labels >= 0
    q = carried(probs[labelled], cost)
    y = labels[labelled]
    return np.array([q[y == c, c].mean() if np.any(y == c) else np.nan for c in range(cost.shape[1])])


@dataclass(frozen=True)
class Coverage:
    """Each teacher's recall of every target class, the teachers in the scan's order."""

    recall: dict[str, np.ndarray]  # teacher id -> (C_S,)
    label_names: tuple[str, ...]

    def covers(self, members: tuple[str, ...] | list[str], threshold: float = COVERED) -> bool:
        """Whether these teachers together recall every target class at >= threshold."""
        return bool(np.nanmin(self.best(members)) >= threshold)

    def best(self, members) -> np.ndarray:
        """(C_S,) the best recall of each class among the members."""
        return np.nanmax(np.stack([self.recall[m] for m in members]), 0)

    def weakest(self, members) -> tuple[str, float]:
        """The class these teachers know least, and its recall."""
        best = self.best(members)
        index = int(np.nanargmin(best))
        return self.label_names[index], float(best[index])


def covering_members(coverage: Coverage, order: list[str], most: int = 3,
                     threshold: float = COVERED) -> tuple[str, ...]:
    """() when the first teacher of `order` (the scan's best) covers the target alone; else that teacher and,
    one at a time, the teacher that most raises the members' summed best recall (capped at the threshold: a
    class known well enough needs no second teacher), until they cover the target, `most` are in, or no teacher
    adds anything. () when no second teacher adds anything."""
    order = [t for t in order if t in coverage.recall]
    if not order or coverage.covers(order[:1], threshold):
        return ()
    members = [order[0]]
    gain = lambda ms: float(np.nansum(np.minimum(coverage.best(ms), threshold)))  # noqa: E731
    while len(members) < most and not coverage.covers(members, threshold):
        now = gain(members)
        scored = [(gain([*members, t]) - now, -index, t) for index, t in enumerate(order) if t not in members]
        if not scored or max(scored)[0] <= 1e-9:
            break
        members.append(max(scored)[2])
    return tuple(members) if len(members) > 1 else ()
