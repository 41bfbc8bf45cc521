"""Assess one teacher from its probe predictions: scores, its cost matrix to the target, its label plan."""
from __future__ import annotations

import numpy as np

from .costs import conditional_cost, describe_plan, label_plan
from ..records import Assessment, Evidence, Predictions, ProbeSet, TeacherSpec
from .scores import score_all


def evidence_for(spec: TeacherSpec, predictions: Predictions, probe: ProbeSet,
                 label_embeddings: dict[str, np.ndarray] | None = None) -> Evidence:
    """Everything scorers may read about one teacher on this probe."""
    teacher_vectors = target_vectors = None
    if label_embeddings and spec.label_names_known:
        teacher_vectors = np.stack([label_embeddings[n] for n in spec.label_names])
        target_vectors = np.stack([label_embeddings[n] for n in probe.label_names])
    return Evidence(predictions.probs.astype(np.float64), predictions.features, probe.labels, probe.num_classes,
                    predictions.classifier, teacher_vectors, target_vectors, spec.param_count, spec.flops_per_sample)


def assess(spec: TeacherSpec, predictions: Predictions, probe: ProbeSet, scorer_names: list[str],
           label_embeddings: dict[str, np.ndarray] | None = None) -> Assessment:
    """Pure: every requested score, the whole-probe conditional cost matrix and a readable label plan."""
    evidence = evidence_for(spec, predictions, probe, label_embeddings)
    scores = score_all(scorer_names, evidence)
    cost = conditional_cost(evidence.probs, probe.labels, probe.num_classes)
    plan = label_plan(evidence.probs, probe.labels, cost)
    return Assessment(scores, cost, describe_plan(plan, spec.label_names, probe.label_names))
