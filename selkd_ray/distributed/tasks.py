"""Run independent calls of a plain function as Ray tasks, one CPU slot each, and stream results back."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import ray


def single_threaded(fn: Callable, *args: Any) -> Any:
    """Each task owns one CPU slot, so torch gets one thread (no oversubscription)."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


def map_unordered(fn: Callable, calls: list[tuple], shared: dict[str, Any] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (index into `calls`, result) as each finishes. `shared` values go to the object store once and
    replace the arguments that name them (`"@task"` for shared["task"])."""
    refs = {name: ray.put(value) for name, value in (shared or {}).items()}
    remote = ray.remote(num_cpus=1, max_retries=2)(single_threaded)
    resolve = lambda a: refs[a[1:]] if isinstance(a, str) and a.startswith("@") and a[1:] in refs else a  # noqa: E731
    pending = {remote.remote(fn, *map(resolve, args)): index for index, args in enumerate(calls)}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(done[0])
        yield index, ray.get(done[0])
