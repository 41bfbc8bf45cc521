"""A teacher's outputs on the student's images: from the prediction cache, else computed once on Ray Data."""
from __future__ import annotations

import time

import numpy as np

from ..io.cache import PredictionCache, prediction_key
from ..progress import Progress, quiet
from ..records import Predictions, ProbeSet, TeacherSpec


def cached_teacher_probs(spec: TeacherSpec, images: ProbeSet, cache: PredictionCache,
                         progress: Progress = quiet) -> np.ndarray:
    """The teacher's outputs on the student's images, computed once by a Ray Data pipeline over an actor pool
    (one actor per GPU, else per CPU slot; the images decoded in the actors) and cached like probe predictions
    (keyed by teacher hash, image-set hash, preprocessing). Only the probabilities are kept: the features of
    50,000 images would be a quarter of a gigabyte, and the distillation never reads them."""
    cached = cache.get(prediction_key(spec, images))
    if cached is not None:
        return cached.probs
    from ..distributed.outputs import teacher_outputs

    started = time.perf_counter()
    probs = teacher_outputs(spec, images.images, progress)
    empty = np.zeros((len(probs), 0), np.float32)
    cache.put(prediction_key(spec, images), Predictions(probs, empty, time.perf_counter() - started))
    return probs
