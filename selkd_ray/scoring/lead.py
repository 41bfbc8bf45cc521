"""LEAD (Hu et al., arXiv 2507.14559): how far fine-tuning would carry a teacher's logits toward the labels.

The paper models fine-tuning as the evolution of the logits under the cross-entropy's gradient flow,
dz/dt = onehot(y) - softmax(z), and estimates the end state in one step, per class. Its exact equations were
not available offline; this is our reading of its abstract, stated so that it can be checked:

1. Logits on the target's label space: z0 = log q, with q LEEP's expected empirical prediction (the teacher's
   own classes carried onto the target's through P(y | z)), so teachers of any label space compare.
2. Class-aware decomposition: each image's prediction splits into its own class against the rest, two logits
   (log q_y, log(1 - q_y)); the margin m = z_y - z_rest then follows dm/dt = 2 (1 - sigmoid(m)) exactly, whose
   solution is closed-form: m(t) + exp(m(t)) = m(0) + exp(m(0)) + 2t (one step, no integration).
3. The score: the log-likelihood of the right class after a fixed evolution time T, log sigmoid(m(T)),
   averaged within each target class and then over classes (every class counts the same).

A teacher whose carried-over predictions are already confident and right scores near 0; one that is wrong
but close scores better than one that is confidently wrong, because the flow moves a small margin further in
the same time. `tests/test_lead.py` checks the closed form against a numerical integration of the two-logit ODE.
"""
from __future__ import annotations

import numpy as np

from .costs import expected_empirical_prediction
from ..records import Evidence
from .registry import SCORERS

EVOLUTION_TIME = 1.0  # T: how much fine-tuning the estimate looks ahead (0: LEEP's log-likelihood, class-balanced)
MARGIN_CLIP = 30.0  # |m(0)| beyond this changes nothing measurable and would overflow exp


def evolved_margin(margin: np.ndarray, time: float = EVOLUTION_TIME) -> np.ndarray:
    """m(T) from m(0) under dm/dt = 2 (1 - sigmoid(m)): the root of m + exp(m) = c, c = m0 + exp(m0) + 2T.
    Newton from a point right of the root (g(m) = m + exp(m) - c >= 0 there) converges monotonically."""
    start = np.clip(margin, -MARGIN_CLIP, MARGIN_CLIP)
    c = start + np.exp(start) + 2.0 * time
    m = np.where(c > 1.0, np.log(np.maximum(c, 1.0)), c)
    for _ in range(100):
        step = (m + np.exp(m) - c) / (1.0 + np.exp(m))
        m = m - step
        if np.all(np.abs(step) < 1e-12):
            break
    return m


@SCORERS.register("lead")
def lead_score(evidence: Evidence, time: float = EVOLUTION_TIME) -> float:
    """Class-balanced mean of log sigmoid(m_n(T)), m_n(0) = log q_y - log(1 - q_y) on LEEP's carried-over q."""
    labels = evidence.labels
    right = expected_empirical_prediction(evidence)[np.arange(len(labels)), labels]
    right = np.clip(right, 1e-13, 1.0 - 1e-13)
    margin = evolved_margin(np.log(right) - np.log1p(-right), time)
    log_likelihood = -np.logaddexp(0.0, -margin)
    return float(np.mean([log_likelihood[labels == c].mean() for c in np.unique(labels)]))
