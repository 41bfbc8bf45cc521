"""Progress events: what long steps (zoo building, scans, distillation, the race) tell whoever watches.

A step reports `Step` objects (a bar can draw done / total) or plain strings (log lines); the CLI turns them
into a live bar on a terminal and log lines elsewhere, and `--quiet` drops them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union


@dataclass(frozen=True)
class Step:
    """One unit of a long step finished: `done` of `total` (total 0 when unknown)."""

    stage: str  # zoo / scan / distill / race ...
    done: int
    total: int
    message: str = ""  # the log line ('' for a bar-only update)
    counts: str = ""  # short status beside the bar
    logged: bool = True  # False: under a live bar, the message is not printed as a log line too

    def __str__(self) -> str:
        return self.message


Progress = Callable[[Union[Step, str, object]], None]


def quiet(event: object) -> None:
    """The default progress sink: say nothing."""
