"""Runner actors for a scan (one per GPU, else one per CPU slot), fed teachers one by one, results streamed back.

Each actor has one teacher running and the next one reserved (its checkpoint already loading). An actor that
dies is restarted by Ray and its unfinished call retried (max_restarts / max_task_retries); if it keeps dying,
the teacher is recorded as failed and a fresh actor takes the slot.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import replace
from typing import Callable, Iterator

import ray
from ray.exceptions import RayActorError, RayTaskError

from ..records import ProbeSet, TeacherResult, TeacherSpec
from ..scoring.runner import Scoring, TeacherRunner
from .runtime import actor_options

ACTOR_PREFIX = "selkd-runner"
# Forward FLOPs worth a runner actor of their own on CPU slots: an actor's start costs a core several seconds
# (torch, timm and POT imported in a fresh process), in which that core computes about this much of a conv
# net's forward pass (40-80 GFLOP/s per core here). A zoo whose probe passes cost less runs on fewer actors.
ACTOR_WORTH_FLOPS = 2e11


class RunnerActor(TeacherRunner):
    """The plain runner on the device Ray gave it, plus the node it runs on."""

    def __init__(self, num_threads: int | None = None) -> None:
        super().__init__(num_threads, assigned_gpus=len(ray.get_gpu_ids()))

    def placement(self) -> dict:
        """Where this runner runs: its node, the GPUs Ray gave it, the torch device, any fallback warning."""
        return {"node": ray.util.get_node_ip_address(), "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "device": str(self.device), "warning": self.placement_choice.warning}

    def run(self, spec: TeacherSpec, probe: ProbeSet, upcoming: TeacherSpec | None,
            scoring: Scoring | None) -> TeacherResult:
        return replace(self(spec, probe, upcoming, scoring), node=ray.util.get_node_ip_address())


def pool_size(capacity: int, max_actors: int | None, teachers: int | None, work_flops: float | None) -> int:
    """Runner actors for a pool: the capacity (GPUs, else free CPU slots), no more than asked for or than there
    are teachers, and on CPU slots no more than the work pays for (`work_flops`: None on GPUs); at least one."""
    count = min(capacity, max_actors or capacity, teachers or capacity)
    if work_flops is not None:
        count = min(count, int(work_flops // ACTOR_WORTH_FLOPS))
    return max(1, count)


class RunnerPool:
    """The actors of one scan, reused across its halving rounds; named `selkd-runner-<scan>-<i>`."""

    def __init__(self, max_actors: int | None = None, teachers: int | None = None,
                 work_flops: float | None = None) -> None:
        count, self.options = actor_options()
        self.capacity = count  # one per GPU, else one per CPU slot
        self.work_flops = work_flops  # the scan's forward passes at most, when known: CPU actors sized by it
        self.count = pool_size(count, max_actors, teachers, None if "num_gpus" in self.options else work_flops)
        self.prefix = f"{ACTOR_PREFIX}-{uuid.uuid4().hex[:8]}"
        self.remote = ray.remote(RunnerActor)
        self.actors = [self.start(i) for i in range(self.count)]

    def sizing(self, max_actors: int | None, teachers: int) -> str:
        """How many actors run and why, when that is fewer than --max-actors asked for ('' otherwise)."""
        if not max_actors or self.count >= max_actors:
            return ""
        unit = "GPUs" if "num_gpus" in self.options else "free CPU slots"
        if self.count == self.capacity:
            why = f"the cluster has {self.capacity} {unit}"
        elif self.count == teachers:
            why = f"{teachers} teachers to run"
        else:
            why = (f"{teachers} teachers' probe passes, {self.work_flops:.3g} FLOPs at most: an actor per "
                   f"{ACTOR_WORTH_FLOPS:.0e} FLOPs")
        return f"--max-actors {max_actors}: {self.count} runner actors ({why})"

    def start(self, index: int):
        name = f"{self.prefix}-{index}-{uuid.uuid4().hex[:4]}"
        return self.remote.options(name=name, max_restarts=2, max_task_retries=2, **self.options).remote(
            self.options["num_cpus"])

    def run(self, specs: list[TeacherSpec], probe: ProbeSet, admit: Callable[[TeacherSpec], bool] = lambda spec: True,
            scoring: Scoring | None = None) -> Iterator[TeacherResult]:
        """Yield each teacher's result as it finishes. `admit` is asked just before a teacher starts (the
        budget); a teacher it refuses comes back as skipped. The probe (and scoring inputs) go to the object
        store once."""
        probe_ref, scoring_ref = ray.put(probe), ray.put(scoring)
        queue, reserved, in_flight = deque(specs), {}, {}
        refused: list[TeacherSpec] = []

        def submit(slot: int) -> None:
            while True:
                spec = reserved.pop(slot, None) or (queue.popleft() if queue else None)
                if spec is None:
                    return
                if admit(spec):
                    break
                refused.append(spec)
            upcoming = queue.popleft() if queue else None
            if upcoming is not None:
                reserved[slot] = upcoming
            in_flight[self.actors[slot].run.remote(spec, probe_ref, upcoming, scoring_ref)] = (slot, spec)

        for slot in range(self.count):
            submit(slot)
        while in_flight or refused:
            while refused:
                yield TeacherResult(refused.pop().teacher_id, None, skipped=True)
            if not in_flight:
                break
            done, _ = ray.wait(list(in_flight), num_returns=1)
            slot, spec = in_flight.pop(done[0])
            result = self.result(done[0], slot, spec)
            submit(slot)  # the slot's next teacher starts before this result is handled
            yield result
        for slot in list(reserved):  # reserved (and prefetched) but never run: the runner lets them go
            self.actors[slot].forget.remote()
        for spec in [reserved.pop(slot) for slot in list(reserved)] + list(queue):
            yield TeacherResult(spec.teacher_id, None, skipped=True)

    def result(self, ref, slot: int, spec: TeacherSpec) -> TeacherResult:
        """A finished teacher's result; a runner that died on it twice is replaced, and the teacher failed."""
        try:
            return ray.get(ref)
        except (RayActorError, RayTaskError) as err:
            ray.kill(self.actors[slot])
            self.actors[slot] = self.start(slot)
            return TeacherResult(spec.teacher_id, None, f"{spec.path}: runner actor died twice on this teacher "
                                 f"({type(err).__name__})")

    def placements(self) -> list[dict]:
        """Each runner's placement (see RunnerActor.placement) with the resources it holds."""
        found = ray.get([actor.placement.remote() for actor in self.actors])
        held = {"GPU" if key == "num_gpus" else "CPU": amount for key, amount in self.options.items()}
        return [{**where, "resources": held} for where in found]

    def ready(self) -> "RunnerPool":
        """Wait until every actor has started (imports done), e.g. before timing a scan."""
        ray.get([actor.__ray_ready__.remote() for actor in self.actors])
        return self

    def close(self, settle_s: float = 5.0, starting_s: float = 15.0) -> None:
        """Kill the actors and wait (briefly) until Ray has their slots back: ray.kill is asynchronous, and
        the next pool or Ray Train job sizes itself from the free slots. An actor still starting (a
        replacement, or one Ray restarts after a crash) is first given `starting_s` to come up: an actor
        killed while it is being created can leave its slot leased to nothing for as long as the driver
        lives (ray-project/ray#27743; seen here as a CPU slot held by a RunnerActor the GCS listed as dead)."""
        ray.wait([actor.__ray_ready__.remote() for actor in self.actors], num_returns=len(self.actors),
                 timeout=starting_s)
        wanted = ray.available_resources().get("CPU", 0.0) + self.count * self.options["num_cpus"]
        for actor in self.actors:
            ray.kill(actor)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and ray.available_resources().get("CPU", 0.0) < wanted - 1e-6:
            time.sleep(0.05)

    def __enter__(self) -> "RunnerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
