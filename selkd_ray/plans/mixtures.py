"""Which teachers a selection's race holds as one mixture: the shortlist's top K (`--mixture K`), or, without it,
the fewest shortlisted teachers that together know every class of the task when no single one does
(`--cover`, `coverage.covering_members`)."""
from __future__ import annotations

import numpy as np

from ..coverage import Coverage, class_recall, covering_members
from ..mixture import describe, score_weights
from ..training.data import StudentData
# `run` below is a `stages.Selection` (not imported: stages calls these, and the import graph has no circle).


def scan_weights(run: "Selection", members: tuple[str, ...]) -> tuple[float, ...]:
    """The members' weights from their scan scores (`mixture.score_weights` at `--mixture-temperature`)."""
    ranked = run.scanned.ranked
    score = {row.teacher_id: row.score for row in ranked}
    return score_weights([score[t] for t in members], [row.score for row in ranked], run.config.mixture_temperature)


def plan_top_k(run: "Selection", short: list[str]) -> None:
    """The shortlist's top K as one candidate, weighed by their scan scores."""
    if run.config.mixture < 2:
        return
    run.mixture = tuple(short[:run.config.mixture])
    run.mixture_weights = scan_weights(run, run.mixture)
    run.progress(f"mixture: {describe(run.mixture, run.mixture_weights)} races as one candidate")


def plan_cover(run: "Selection", short: list[str], data: dict[str, StudentData]) -> bool:
    """Without `--mixture`, once the shortlist's outputs are in: when the scan's best teacher does not know
    every class of the task (`coverage`, on the labelled student images), the fewest shortlisted teachers
    that together do race as one mixture, weighed by their scan scores. Whether one was planned."""
    usable = [t for t in short if data[t].teacher_logits is not None and data[t].cost is not None]
    if not run.config.cover or run.mixture or len(usable) < 2:
        return False
    recall = {t: class_recall(np.exp(data[t].teacher_logits), data[t].labels, data[t].cost) for t in usable}
    present = np.isin(np.arange(len(run.task.label_names)), data[usable[0]].labels)  # classes with labels
    broken = [t for t in usable if not np.isfinite(recall[t][present]).all()]  # outputs or cost not finite
    if broken:
        run.progress(f"coverage: cannot be computed for {', '.join(broken)} (its outputs on the labelled images "
                     "or its cost matrix are not finite)" + (": no mixture races" if broken[0] == usable[0] else
                                                               "; left out of the covering mixture"))
        if broken[0] == usable[0]:
            return False
        usable = [t for t in usable if t not in broken]
        if len(usable) < 2:
            return False
    coverage = Coverage({t: recall[t] for t in usable}, run.task.label_names)
    members = covering_members(coverage, usable, most=min(3, len(usable)))
    weakest, recall = coverage.weakest(usable[:1])
    if not members:
        known = "knows every class of the task" if coverage.covers(usable[:1]) else "is not helped by another"
        run.progress(f"coverage: {usable[0]} {known} (its weakest, {weakest}, recalled at {recall:.2f} on the "
                     "labelled images): no mixture races")
        return False
    run.mixture, run.mixture_weights = members, scan_weights(run, members)
    together, least = coverage.weakest(members)
    run.mixture_rule = (f"covering: {usable[0]} recalls {weakest} at {recall:.2f}; together the weakest, "
                        f"{together}, at {least:.2f}")
    run.progress(f"mixture: no shortlisted teacher knows every class of the task ({usable[0]} recalls "
                 f"{weakest} at {recall:.2f} on the labelled images); {describe(members, run.mixture_weights)} "
                 f"race as one candidate (together the weakest class, {together}, at {least:.2f})")
    return True
