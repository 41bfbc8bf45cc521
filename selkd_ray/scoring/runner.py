"""TeacherRunner: load teachers and run them on probe sets. Plain Python; the Ray layer makes it an actor.

While one teacher runs, the next one's checkpoint loads on a background thread (the driver names it), so
reading weights from disk overlaps with computing.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch

from .assessment import assess
from ..errors import SelkdError
from ..models.forward import ForwardPath, choose_device, teacher_predictions
from ..records import ProbeSet, TeacherResult, TeacherSpec


@dataclass(frozen=True)
class Scoring:
    """What a runner needs to assess a teacher where it ran it: the scorer names and label-name vectors."""

    scorers: list[str]
    label_embeddings: dict | None = None


class TeacherRunner:
    """Called once per (teacher, probe). Failures come back as results, never as exceptions.

    Scoring is left to the driver: it is cheap maths, and cached and fresh predictions then take one path.
    """

    def __init__(self, num_threads: int | None = None, assigned_gpus: int | None = None) -> None:
        """`assigned_gpus`: the GPUs the scheduler gave this runner (None outside Ray: CUDA if present)."""
        if num_threads:
            torch.set_num_threads(num_threads)
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.prefetched: dict[str, Future] = {}
        self.placement_choice = choose_device(assigned_gpus)
        self.device = self.placement_choice.device

    def prefetch(self, spec: TeacherSpec | None) -> None:
        """Start loading `spec` in the background; a load error surfaces when the teacher is run."""
        if spec is not None and spec.path not in self.prefetched:
            self.prefetched[spec.path] = self.loader.submit(self.load, spec)

    def load(self, spec: TeacherSpec) -> ForwardPath:
        return ForwardPath.for_teacher(spec, self.device)

    def forward(self, spec: TeacherSpec) -> ForwardPath:
        future = self.prefetched.pop(spec.path, None)
        return future.result() if future is not None else self.load(spec)

    def __call__(self, spec: TeacherSpec, probe: ProbeSet, upcoming: TeacherSpec | None = None,
                 scoring: Scoring | None = None) -> TeacherResult:
        """Run `spec` on the probe and, given `scoring`, assess it here too (so N runners score in parallel)."""
        started, raw = time.perf_counter(), None
        self.forget(keep=(spec, upcoming))
        try:
            forward = self.forward(spec)
            self.prefetch(upcoming)
            raw = replace(teacher_predictions(spec, forward, probe.images), seconds=time.perf_counter() - started)
            assessment = assess(spec, raw, probe, scoring.scorers, scoring.label_embeddings) if scoring else None
            return TeacherResult(spec.teacher_id, raw, assessment=assessment, forward_ran=True)
        except SelkdError as err:
            self.prefetch(upcoming)
            return TeacherResult(spec.teacher_id, None, str(err), forward_ran=raw is not None)
        except Exception as err:  # a broken teacher must not stop the scan
            self.prefetch(upcoming)
            return TeacherResult(spec.teacher_id, None, f"{spec.path}: {type(err).__name__}: {err}".splitlines()[0],
                                 forward_ran=raw is not None)

    def forget(self, keep: tuple[TeacherSpec | None, ...] = ()) -> None:
        """Drop prefetched teachers other than `keep`: one the driver reserved and then did not run (refused by
        the budget, or left when a scan ended) must not stay loaded in a runner that later scans reuse."""
        wanted = {spec.path for spec in keep if spec is not None}
        for path in [path for path in self.prefetched if path not in wanted]:
            self.prefetched.pop(path).cancel()
