"""TeacherRunner: load a teacher and run it on the probe. Plain Python; the Ray layer makes it an actor."""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from .errors import SelkdError
from .models import load_teacher, teacher_predictions
from .records import ProbeSet, TeacherResult, TeacherSpec


class TeacherRunner:
    """Holds the probe set; called once per teacher. Failures come back as results, never as exceptions.

    Scoring is left to the driver: it is cheap maths, and cached and fresh predictions then take one path.
    """

    def __init__(self, probe: ProbeSet, num_threads: int | None = None) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        self.probe = probe

    def __call__(self, spec: TeacherSpec) -> TeacherResult:
        started = time.perf_counter()
        try:
            model = load_teacher(spec)
            raw = teacher_predictions(spec, model, self.probe.images)
            return TeacherResult(spec.teacher_id, replace(raw, seconds=time.perf_counter() - started))
        except SelkdError as err:
            return TeacherResult(spec.teacher_id, None, str(err))
        except Exception as err:  # a broken teacher must not stop the scan
            return TeacherResult(spec.teacher_id, None, f"{spec.path}: {type(err).__name__}: {err}".splitlines()[0])
