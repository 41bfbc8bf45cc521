"""Scores that cannot tell teachers apart: a scorer whose value is the same for most teachers of a scan (SFDA
at exactly 1.0, N-LEEP at 0.0, kNN at 1.0 on a probe of a few images per class) ranks them by a tie, and the
order shown is the tie-break's, not the scorer's. Pure: reads the scan's rows, says which scorers tied."""
from __future__ import annotations

import math
from collections import Counter

MIN_TEACHERS = 3  # below this a tie says little


def tied_value(values: list[float]) -> tuple[float, int] | None:
    """(the value most teachers share, how many) when at least half of them share one, else None. Values are
    compared to 9 significant digits: a scorer's exact saturation, not two close scores."""
    if len(values) < MIN_TEACHERS:
        return None
    value, count = Counter(float(f"{v:.9g}") for v in values).most_common(1)[0]
    return (value, count) if count * 2 >= len(values) and count > 1 else None


def uninformative(rows: list, scorers: tuple[str, ...] | list[str]) -> dict[str, str]:
    """{scorer: why} for each scorer whose finite values over the scan's scored teachers tie for at least half
    of them, with the probe they were computed on."""
    said = {}
    for name in scorers:
        values = [(row.scores.get(name), row.probe_size) for row in rows if row.rank is not None]
        finite = [(v, size) for v, size in values if v is not None and math.isfinite(v)]
        tie = tied_value([v for v, _ in finite])
        if tie is not None:
            sizes = sorted({size for _, size in finite if size})
            probe = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
            said[name] = f"{tie[1]} of {len(finite)} teachers share one value ({tie[0]:.6g}) on a probe of {probe} images"
    return said


def describe(said: dict[str, str]) -> str:
    """One line for the summary ('' when every scorer told the teachers apart)."""
    if not said:
        return ""
    return ("uninformative on this probe (its order is the tie-break's; a larger --probe-per-class may separate "
            "them): " + "; ".join(f"{name}: {why}" for name, why in said.items()))
