"""A scan's rows as a ranking: the order (best first, unscored last), a row reused from the last scan, a
failed teacher's row, the score after each round."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..records import ProbeSet, TeacherSpec
from ..rows import ScoreRow, Status


def reusable(previous: dict, spec: TeacherSpec, probe: ProbeSet, scorers: list[str], ranking: str,
             earlier: ScoreRow | None) -> ScoreRow | None:
    """The last scan's row for this teacher on this very probe, if it holds every requested score: a rescan
    of an unchanged zoo then reads one table instead of every teacher's predictions. It costs nothing now, so
    the row carries only what this scan spent on the teacher in `earlier` rounds."""
    row = previous.get((spec.content_hash, probe.probe_hash))
    if row is None or any(row.scores.get(name) is None for name in scorers):
        return None
    score = row.scores.get(ranking, math.nan) if ranking in scorers else math.nan  # a task scorer's: later
    return replace(row, teacher_id=spec.teacher_id, path=spec.path, status=Status.CACHED.value, node="",
                   flops=earlier.flops if earlier else 0, seconds=earlier.seconds if earlier else 0.0, score=score,
                   round_scores=round_scores(earlier, score), scores={k: row.scores[k] for k in scorers}, rank=None)


def score_key(row: ScoreRow, tiebreak: tuple[str, ...] = ()) -> tuple:
    """Best first; a NaN score (a scorer this teacher lacks inputs for) after every number; ties broken by the
    other scorers in `--scorer` order (a saturated score, kNN at 1.0 for two teachers, says nothing between
    them), then by id."""
    def descending(value) -> tuple:
        missing = value is None or not np.isfinite(value)
        return (missing, 0.0 if missing else -value)

    return (*descending(row.score), *(part for name in tiebreak for part in descending(row.scores.get(name))),
            row.teacher_id)


def round_scores(earlier: ScoreRow | None, score: float) -> tuple[float, ...]:
    """The ranking score after every round this teacher has reached in this scan, this one last."""
    return (*((earlier.round_scores or ()) if earlier else ()), float(score))


def failed_row(spec: TeacherSpec, error: str) -> ScoreRow:
    return ScoreRow(spec.teacher_id, spec.path, spec.architecture, spec.content_hash, Status.FAILED.value, error)


def rank_rows(rows: list[ScoreRow], tiebreak: tuple[str, ...] = ()) -> list[ScoreRow]:
    """Teachers that reached a later round first (they beat the others there), then by score (ties by the
    `tiebreak` scorers); teachers that never ran (failed, skipped) last, unranked."""
    good = sorted((r for r in rows if r.ranked), key=lambda r: (-(r.round or 0), *score_key(r, tiebreak)))
    bad = sorted((r for r in rows if not r.ranked), key=lambda r: (r.status, r.teacher_id))
    return [replace(row, rank=i + 1) for i, row in enumerate(good)] + [replace(row, rank=None) for row in bad]


def tiebreak(scorers: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The scorers that break ties of the ranking one (the first): the others, in the order given."""
    return tuple(name for name in scorers[1:] if name != scorers[0])
