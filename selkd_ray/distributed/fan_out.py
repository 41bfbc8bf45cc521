"""Independent calls of a plain function fanned out over the cluster on Ray Data, one CPU slot each, results
streamed back as each finishes: how the zoo is indexed, a large task surveyed, and benchmarks train in parallel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import ray

from .runtime import quiet_data


@dataclass(frozen=True)
class Call:
    """One call's arguments, carried through Ray Data as one opaque object (never converted to Arrow)."""

    index: int
    args: tuple


def call_row(row: dict, fn: Callable, shared: dict[str, Any]) -> dict:
    """Each call owns one CPU slot, so torch gets one thread (no oversubscription)."""
    import torch

    torch.set_num_threads(1)
    call: Call = row["item"]
    args = [shared[a[1:]] if isinstance(a, str) and a.startswith("@") and a[1:] in shared else a for a in call.args]
    return {"index": call.index, "result": fn(*args)}


def fan_out(fn: Callable, calls: list[tuple], shared: dict[str, Any] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (index into `calls`, result) as each call finishes, each a Ray Data task of one CPU. `shared`
    values travel once (Ray Data's `fn_kwargs`) and replace the arguments that name them (`"@task"`)."""
    if not calls:
        return
    quiet_data()
    items = [Call(index, tuple(args)) for index, args in enumerate(calls)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
        call_row, fn_kwargs={"fn": fn, "shared": shared or {}}, num_cpus=1)
    for row in dataset.iter_rows():
        yield int(row["index"]), row["result"]


def fan_out_in_order(fn: Callable, calls: list[tuple], shared: dict[str, Any] | None = None) -> list[Any]:
    """Every call's result, in the calls' order."""
    results: list[Any] = [None] * len(calls)
    for index, result in fan_out(fn, calls, shared):
        results[index] = result
    return results
