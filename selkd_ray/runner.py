"""TeacherRunner: load a teacher, run it on the probe, assess it. Plain Python; the Ray layer makes it an actor."""
from __future__ import annotations

import time

import torch

from .assessment import assess
from .errors import SelkdError
from .models import load_teacher, teacher_predictions
from .records import Predictions, ProbeSet, TeacherResult, TeacherSpec


class TeacherRunner:
    """Holds the probe set; called once per teacher. Failures come back as results, never as exceptions."""

    def __init__(self, probe: ProbeSet, scorer_names: list[str], num_threads: int | None = None) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        self.probe = probe
        self.scorer_names = list(scorer_names)

    def __call__(self, spec: TeacherSpec) -> TeacherResult:
        started = time.perf_counter()
        try:
            model = load_teacher(spec)
            raw = teacher_predictions(spec, model, self.probe.images)
            predictions = Predictions(raw.probs, raw.features, time.perf_counter() - started)
            return TeacherResult(spec.teacher_id, predictions, assess(spec, predictions, self.probe, self.scorer_names))
        except SelkdError as err:
            return TeacherResult(spec.teacher_id, None, {}, str(err))
        except Exception as err:  # a broken teacher must not stop the scan
            return TeacherResult(spec.teacher_id, None, {}, f"{spec.path}: {type(err).__name__}: {err}".splitlines()[0])
