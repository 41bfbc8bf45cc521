"""Several teachers at once: who is in a mixture and with what weight. Pure: no Ray, no models.

A mixture distils the student from K teachers of different label spaces together, each teacher's prediction
carried onto the student's labels through its own cost matrix (`training/losses.mixture_distillation_loss`).
The weights are given (`--weights`), equal, or come from the scan: a softmax over the members' ranking scores
standardised within the task (z-scores over every ranked teacher, so that scorers of any scale compare):

    w_k = exp(z_k / T) / sum_j exp(z_j / T),   z_k = (s_k - mean(s)) / std(s) over the scan's ranked teachers

with temperature T (`--mixture-temperature`, default 1): large T tends to equal weights, small T to the top
teacher alone. With `--per-image-weights` each image's teachers are weighed again by their confidence on it
(`training/losses.confidence_weights`).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import SelkdError

MIXTURE_PREFIX = "mixture:"  # a mixture candidate's name: mixture:a+b+c


def check_members(teachers: list[str] | tuple[str, ...], flag: str = "--teacher") -> None:
    """Duplicate teachers are one line (the same teacher twice would only double its weight)."""
    seen = [t for i, t in enumerate(teachers) if t in teachers[:i]]
    if seen:
        raise SelkdError(f"{flag}: {seen[0]!r} is given twice; a mixture's teachers are distinct")


def check_weights(weights: tuple[float, ...] | None, members: int, flag: str = "--weights") -> tuple[float, ...]:
    """Given weights, normalised to sum 1: one per teacher, finite, non-negative, with a positive sum; None:
    equal weights."""
    if weights is None:
        return tuple([1.0 / members] * members)
    if len(weights) != members:
        raise SelkdError(f"{flag}: {len(weights)} weight(s) for {members} teacher(s); expected one per --teacher")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise SelkdError(f"{flag}: expected non-negative numbers with a positive sum, got "
                         f"{','.join(f'{w:g}' for w in weights)}")
    return tuple(float(w) / sum(weights) for w in weights)


def parse_weights(text: str | None) -> tuple[float, ...] | None:
    """'0.7,0.3' -> (0.7, 0.3); a word that is no number is one line."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SelkdError(f"--weights: expected comma-separated numbers (0.7,0.3), got '{text}'") from None


def score_weights(member_scores: list[float], all_scores: list[float], temperature: float) -> tuple[float, ...]:
    """The softmax over the members' within-task z-scores at `temperature` (equal weights where the scores do
    not vary or are not finite)."""
    scores = np.array([s for s in all_scores if math.isfinite(s)], dtype=float)
    members = np.array(member_scores, dtype=float)
    if len(scores) < 2 or scores.std() == 0 or not np.isfinite(members).all():
        return tuple([1.0 / len(members)] * len(members))
    z = (members - scores.mean()) / scores.std() / temperature
    w = np.exp(z - z.max())
    return tuple((w / w.sum()).tolist())


def check_mixture(members: list[str] | tuple[str, ...], weights: tuple[float, ...] | None,
                  loss: str) -> tuple[float, ...]:
    """Several teachers' settings, one line each before any work: distinct teachers, one weight each with a
    positive sum, the OT loss (the only one that carries each teacher's labels onto the task's). The weights,
    normalised (equal when none are given)."""
    check_members(members)
    weights = check_weights(weights, len(members))
    if loss != "ot":
        raise SelkdError(f"--loss {loss}: several teachers at once need the OT loss (--loss ot)")
    return weights


def check_per_image(per_image: bool, members: int, hint: str = "give two --teacher or more") -> None:
    """Per-image weights weigh several teachers against each other image by image: with one teacher they would
    change nothing, so asking for them there is a mistake said in one line."""
    if per_image and members < 2:
        raise SelkdError(f"--per-image-weights: weighs several teachers per image; {hint}")


def mixture_name(members: list[str] | tuple[str, ...]) -> str:
    return MIXTURE_PREFIX + "+".join(members)


def members_of(candidate: str) -> tuple[str, ...]:
    """A mixture candidate's teachers; () for a single teacher or label-only."""
    return tuple(candidate[len(MIXTURE_PREFIX):].split("+")) if candidate.startswith(MIXTURE_PREFIX) else ()


def describe(members: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return " + ".join(f"{w:.2f} {m}" for m, w in zip(members, weights))
