"""POT (every optimal-transport computation), imported in one place: without the scikit-learn it loads for a
feature we never use.

Why: POT's `ot.lowrank` imports `sklearn.cluster` at the top, for the k-means start of low-rank Sinkhorn, and
guards it (POT runs without scikit-learn; that one option then says it is missing). We never call low-rank
Sinkhorn, and importing scikit-learn costs about 0.5 s of CPU in every process that imports POT: each runner
actor, Ray Train worker and Tune trial, and every command (measured: torch, timm, POT, Ray Tune and our
training loop in a fresh interpreter, three times each, 4.4-4.7 s of CPU against 4.0-4.1 s). So POT is imported
while `sklearn.cluster` is marked absent, and the mark is taken away at once: a later `import sklearn.cluster`
(our published scorers', a user's own) imports it as usual. What a user loses in a process that imported
selkd_ray first: POT's low-rank Sinkhorn with `init="kmeans"`."""
from __future__ import annotations

import sys

_BLOCKED = "sklearn.cluster"
_marked = _BLOCKED not in sys.modules
if _marked:
    sys.modules[_BLOCKED] = None  # importlib reads None as "absent": POT's guard takes its no-sklearn branch
try:
    import ot  # noqa: E402
    from ot.batch import solve_batch  # noqa: E402
finally:
    if _marked and sys.modules.get(_BLOCKED, 0) is None:
        del sys.modules[_BLOCKED]

__all__ = ["ot", "solve_batch"]
