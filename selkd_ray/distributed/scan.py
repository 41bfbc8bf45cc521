"""Fan teachers out over Ray actors (one per GPU, else one per CPU slot) and stream results back."""
from __future__ import annotations

from typing import Callable, Iterator

import ray
from ray.util import ActorPool

from ..records import ProbeSet, TeacherResult, TeacherSpec
from ..runner import TeacherRunner
from .runtime import cpu_slots, gpu_count


def actor_options() -> tuple[int, dict]:
    """How many runner actors, and the resources each takes."""
    gpus = gpu_count()
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return cpu_slots(), {"num_cpus": 1}


def run_teachers(specs: list[TeacherSpec], probe: ProbeSet, max_actors: int | None = None) -> Iterator[TeacherResult]:
    """Yield each teacher's result as soon as it is done; the probe goes to the object store once."""
    if not specs:
        return
    count, options = actor_options()
    count = max(1, min(count, len(specs), max_actors or count))
    probe_ref = ray.put(probe)
    runner_actor = ray.remote(TeacherRunner).options(max_restarts=2, max_task_retries=2, **options)
    actors = [runner_actor.remote(probe_ref, options["num_cpus"]) for _ in range(count)]
    try:
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, spec: actor.__call__.remote(spec), specs)
    finally:
        for actor in actors:
            ray.kill(actor)
