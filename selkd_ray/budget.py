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
    if not math.isfinite(value):  # '1e999' overflows to infinity: refused as 'inf' is
        raise SelkdError(f"--budget: expected a finite amount, got '{text}'")
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


@dataclass(frozen=True)
class Charge:
    """One thing the budget paid for: a stage's forward (and backward) passes."""

    stage: str
    flops: float
    seconds: float = 0.0


@dataclass
class Ledger:
    """The one budget of a job: it plans what each stage may spend, charges every forward pass the tool causes
    (the scan's probe passes, the teachers' outputs on the student's images, training with its validation
    passes, the guard's and the test split's passes) and refuses what it cannot pay.

    FLOPs are committed before work starts, so a FLOPs budget is never exceeded; a seconds budget stops new
    starts once wall time is up. A stage's ledger (`for_stage`) has its own limit and charges its parent too,
    so `flops` of the job's ledger is what the machine did."""

    budget: Budget | None
    flops: int = 0
    seconds: float = 0.0  # wall time since the job (or stage) began, updated by the caller
    skipped: list[str] = field(default_factory=list)
    round_flops: list[int] = field(default_factory=list)  # the scan: cumulative FLOPs at the end of each round
    charges: list[Charge] = field(default_factory=list)  # what each stage was charged, in order
    reserved: float = 0.0  # FLOPs held back for a later stage (a selection's final stage and its evaluation)
    shares: dict[str, float] = field(default_factory=dict)  # a seconds budget's fixed share per stage
    notes: list[str] = field(default_factory=list)  # what the plan could not give, in words
    parent: "Ledger | None" = None

    # -- charging ------------------------------------------------------------------------------------------
    def affords(self, flops: float) -> bool:
        """Whether work costing `flops` may start now."""
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

    def spend(self, flops: float) -> None:
        """Charge (or, negative, refund) FLOPs here and in the job's ledger above."""
        self.flops += int(flops)
        if self.parent is not None:
            self.parent.spend(flops)

    def charge(self, stage: str, flops: float, seconds: float = 0.0) -> None:
        """Record what a stage spent, charging its FLOPs (a stage whose ledger charged as it went passes 0)."""
        self.charges.append(Charge(stage, float(flops), seconds))
        self.spend(flops)

    def close_round(self) -> None:
        self.round_flops.append(self.flops)

    # -- planning ------------------------------------------------------------------------------------------
    def for_stage(self, limit: float | None) -> "Ledger":
        """A ledger for one stage, limited to `limit` (FLOPs or seconds, the budget's kind), charging this one."""
        budget = None if self.budget is None or limit is None else Budget(self.budget.kind, limit)
        return Ledger(budget, parent=self)

    def plan_selection(self, scan_share: float, final_need: float) -> float | None:
        """Split a selection's budget before its scan; returns the scan's limit. A FLOPs budget gives the scan at
        most `scan_share`, reserves the final stage's need (its two students and their evaluation) next, and
        leaves the race what the scan and the teachers' outputs do not spend (`race_allowance`). A seconds
        budget is split by fixed shares of wall time: the scan's, then the race and the final stage half each."""
        if self.budget is None:
            return None
        if self.budget.kind == "seconds":
            rest = self.budget.amount * (1 - scan_share)
            self.shares = {"scan": self.budget.amount * scan_share, "race": rest / 2, "final": rest / 2}
            return self.shares["scan"]
        scan = self.budget.amount * scan_share
        self.reserved = min(final_need, self.budget.amount - scan)
        if self.reserved < final_need:
            self.notes.append(f"the budget covers {self.reserved / final_need:.0%} of the final distillation's epochs")
        return scan

    def race_allowance(self) -> float | None:
        """FLOPs the race's training may spend after everything charged so far, never the final reserve (None:
        no FLOPs limit; a seconds budget limits the race by its wall share, `share("race")`)."""
        if self.budget is None or self.budget.kind == "seconds":
            return None
        return max(0.0, self.budget.amount - self.flops - self.reserved)

    def final_allowance(self) -> float | None:
        """What the final stage may spend: a FLOPs budget's remainder (a race's savings flow here), a seconds
        budget's share, or None without a budget."""
        if self.budget is None:
            return None
        if self.budget.kind == "seconds":
            return self.shares["final"]
        return max(0.0, self.budget.amount - self.flops)

    def share(self, stage: str) -> float | None:
        """A seconds budget's wall-time share for a stage (None for a FLOPs budget or none)."""
        return self.shares.get(stage)

    def require(self, left: float, needed: float, what: str) -> None:
        """Refuse in one line, before any work, a stage that `left` FLOPs cannot pay for."""
        if self.budget is not None and self.budget.kind == "flops" and left < needed:
            raise SelkdError(f"--budget: {self.budget} leaves {left:.3g} FLOPs for {what}; needs {needed:.3g}")

    # -- in words ------------------------------------------------------------------------------------------
    def spent(self) -> float:
        return self.seconds if self.budget is not None and self.budget.kind == "seconds" else float(self.flops)

    def describe(self) -> str:
        used = f"{self.flops:.3g} FLOPs, {self.seconds:.1f} s"
        if self.budget is None:
            return f"spent {used} (no budget)"
        share = self.spent() / self.budget.amount
        return f"spent {used} of a {self.budget} budget ({share:.0%})"
