"""The scan's compute budget and its successive-halving plan: pure arithmetic, no Ray, no I/O.

A budget is FLOPs (forward FLOPs per sample x samples) or wall seconds. The plan scores every teacher on a
small probe, keeps the best 1/eta, and gives the survivors a probe eta times larger, up to the full probe.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import SelkdError

SECONDS_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
FLOPS_UNITS = {"": 1.0, "flops": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "gflops": 1e9, "t": 1e12, "tflops": 1e12}


@dataclass(frozen=True)
class Budget:
    kind: str  # "flops" or "seconds"
    amount: float

    def __str__(self) -> str:
        return f"{self.amount:.3g} FLOPs" if self.kind == "flops" else f"{self.amount:.0f} s"


def parse_budget(text: str | None) -> Budget | None:
    """'2e9' or '2G' (FLOPs), '300s', '5min', '1h' (wall seconds); None or '' for no budget.

    Bare numbers are FLOPs; 'm' alone means mega (FLOPs), 'min' means minutes."""
    if text is None or not str(text).strip():
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match and unit in FLOPS_UNITS:
        value = float(match.group(1)) * FLOPS_UNITS[unit]
        kind = "flops"
    elif match and unit in SECONDS_UNITS:
        value, kind = float(match.group(1)) * SECONDS_UNITS[unit], "seconds"
    else:
        raise SelkdError(f"--budget: '{text}' is not a budget; expected FLOPs like 2e9 or 2G, or seconds like "
                         "300s, 5min, 1h")
    if value <= 0:
        raise SelkdError(f"--budget: expected a positive amount, got '{text}'")
    return Budget(kind, value)


def probe_sizes(probe_per_class: int, min_probe: int | None, eta: int | None) -> list[int]:
    """Per-class probe size of each round, growing by eta from min_probe up to probe_per_class.

    One round (the full probe) when halving is off (eta None) or min_probe already reaches the full probe.
    """
    if eta is None:
        return [probe_per_class]
    if eta < 2:
        raise SelkdError(f"--eta: expected an integer >= 2, got {eta}")
    smallest = min_probe or 2
    if smallest < 2:
        raise SelkdError(f"--min-probe: expected at least 2 images per class (cross-fitting halves), got {smallest}")
    sizes = []
    size = smallest
    while size < probe_per_class:
        sizes.append(size)
        size *= eta
    return sizes + [probe_per_class]


def survivors(count: int, eta: int | None) -> int:
    """How many teachers go on to the next round: the best ceil(count / eta)."""
    return count if eta is None else max(1, math.ceil(count / eta))


@dataclass
class Ledger:
    """What the scan has spent against its budget (FLOPs are always counted; seconds only as wall time)."""

    budget: Budget | None
    flops: int = 0
    seconds: float = 0.0  # wall time since the scan began, updated by the caller
    skipped: list[str] = field(default_factory=list)
    round_flops: list[int] = field(default_factory=list)  # cumulative FLOPs at the end of each round

    def close_round(self) -> None:
        self.round_flops.append(self.flops)

    def affords(self, flops: int) -> bool:
        """Whether a teacher costing `flops` may start now: FLOPs are committed before the teacher runs,
        so a FLOPs budget is never exceeded; a seconds budget stops new starts once time is up."""
        if self.budget is None:
            return True
        if self.budget.kind == "flops":
            return self.flops + flops <= self.budget.amount
        return self.seconds < self.budget.amount

    def charge_if_affordable(self, flops: int) -> bool:
        """Charge `flops` when the budget pays for them now; refuse, charging nothing, when it does not."""
        if not self.affords(flops):
            return False
        self.spend(flops)
        return True

    def spend(self, flops: int) -> None:
        self.flops += int(flops)

    def spent(self) -> float:
        return self.seconds if self.budget is not None and self.budget.kind == "seconds" else float(self.flops)

    def describe(self) -> str:
        used = f"{self.flops:.3g} FLOPs, {self.seconds:.1f} s"
        if self.budget is None:
            return f"spent {used} (no budget)"
        share = self.spent() / self.budget.amount
        return f"spent {used} of a {self.budget} budget ({share:.0%})"
