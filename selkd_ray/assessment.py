"""Assess one teacher from its probe predictions: scores, its cost matrix to the target, its label plan."""
from __future__ import annotations

import numpy as np

from .costs import conditional_cost, describe_plan, label_plan
from .records import Predictions, ProbeSet, TeacherSpec
from .scores import score_all


def assess(spec: TeacherSpec, predictions: Predictions, probe: ProbeSet, scorer_names: list[str]) -> dict:
    """Pure: every requested score, the whole-probe conditional cost matrix and a readable label plan."""
    probs = predictions.probs.astype(np.float64)
    scores = score_all(scorer_names, probs, predictions.features, probe.labels, probe.num_classes)
    cost = conditional_cost(probs, probe.labels, probe.num_classes)
    plan = label_plan(probs, probe.labels, cost)
    return {"scores": scores, "cost_matrix": cost,
            "label_plan": describe_plan(plan, spec.label_names, probe.label_names)}
