"""A teacher's outputs on the student's images: from the prediction cache, else computed once: here when it is
cheap, else on Ray Data."""
from __future__ import annotations

import time

import numpy as np

from ..io.cache import PredictionCache, prediction_key
from ..progress import Progress, quiet
from ..records import Predictions, ProbeSet, TeacherSpec
from ..training.student_data import local_teacher_probs

# A teacher's outputs costing at most this many forward FLOPs run here, in the calling process (a few seconds
# on one CPU core): less than starting Ray Data's actor pool (an actor's start alone imports torch and timm).
OUTPUTS_HERE_FLOPS = 5e10


def cached_teacher_probs(spec: TeacherSpec, images: ProbeSet, cache: PredictionCache,
                         progress: Progress = quiet) -> np.ndarray:
    """The teacher's outputs on the student's images, computed once (in this process when they cost at most
    OUTPUTS_HERE_FLOPS, else by a Ray Data pipeline over an actor pool: one actor per GPU, else per CPU slot,
    the images decoded in the actors) and cached like probe predictions
    (keyed by teacher hash, image-set hash, preprocessing). Only the probabilities are kept: the features of
    50,000 images would be a quarter of a gigabyte, and the distillation never reads them."""
    cached = cache.get(prediction_key(spec, images))
    if cached is not None:
        return cached.probs
    started = time.perf_counter()
    if spec.flops_per_sample * len(images) <= OUTPUTS_HERE_FLOPS:
        probs = local_teacher_probs(spec, images, progress)
    else:
        from ..distributed.outputs import teacher_outputs

        probs = teacher_outputs(spec, images.images, progress)
    empty = np.zeros((len(probs), 0), np.float32)
    cache.put(prediction_key(spec, images), Predictions(probs, empty, time.perf_counter() - started))
    return probs

