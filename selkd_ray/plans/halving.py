"""The scan's rounds, run from the driver: pre-screen, successive-halving rounds under a budget, the ranking.

Each round scores the surviving teachers on a nested probe (cached predictions cost nothing), keeps the best
1/eta, and gives them a probe eta times larger. Results stream into the cache as they arrive, so a killed
scan restarts where it stopped; the driver keeps only small rows, never predictions.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from ..budget import Ledger, parse_budget, probe_sizes, survivors
from ..config import ScanConfig
from ..errors import SelkdError
from ..io.cache import PredictionCache, prediction_key
from ..io.fs import Location
from ..progress import Step
from ..records import Assessment, Evidence, Predictions, ProbeSet, Task, TeacherResult, TeacherSpec
from ..rows import ScoreRow, Status
from ..scoring.assessment import assess
from ..scoring.probe import make_probe
from ..scoring.rankers import Candidate, TaskEvidence, inputs_of, score_task, task_scorers
from ..scoring.runner import Scoring
from ..scoring import SCORERS
from ..scoring.scores import needs_label_embeddings
from ..experience import label_overlap
from .ranking import failed_row, reusable, round_scores, score_key, tiebreak


@dataclass(frozen=True)
class ScanEvent(Step):
    """One step of a scan, for progress bars and logs; str() is the log line."""

    kind: str = ""  # scored / cached / failed / dropped / skipped / round / note
    teacher_id: str = ""
    failed: int = 0
    cached: int = 0
    spent: str = ""  # the ledger, in words


LOGGED = ("round", "note", "failed")  # event kinds that also print a line under a live bar
Events = Callable[[ScanEvent], None]
RunTeachers = Callable[[list[TeacherSpec], ProbeSet, Callable[[TeacherSpec], bool], Scoring], Iterable[TeacherResult]]
History = Callable[[], tuple[dict[str, tuple[Candidate, ...]], str]]  # past outcomes by task, or why none


class Tally:
    """Counts for progress events."""

    def __init__(self, events: Events, ledger: Ledger) -> None:
        self.events, self.ledger = events, ledger
        self.done = self.total = self.failed = self.cached = 0

    def begin(self, total: int, message: str) -> None:
        self.done, self.total = 0, total
        self.emit("round", "", message)

    def emit(self, kind: str, teacher_id: str, message: str) -> None:
        if kind in ("scored", "cached", "failed", "skipped"):
            self.done += 1
        self.failed += kind == "failed"
        self.cached += kind == "cached"
        spent = self.ledger.describe()
        self.events(ScanEvent("scan", self.done, self.total, message,
                              f"failed {self.failed}, cached {self.cached}; {spent}", kind in LOGGED, kind,
                              teacher_id, self.failed, self.cached, spent))


class Rounds:
    """The state of one scan's rounds, where it lives: every teacher's row so far, the ledger, the cache."""

    def __init__(self, config: ScanConfig, events: Events, cache: PredictionCache, previous_rows: list[ScoreRow],
                 label_embeddings: Callable[[], dict] | None, ledger: Ledger | None = None,
                 history: History | None = None) -> None:
        self.config, self.cache, self.ranking = config, cache, config.scorers[0]
        # the teachers' own scorers (the requested ones, then what the task scorers read); the task scorers
        # rank a round's teachers together once every one of them is scored
        self.task_level = task_scorers(config.scorers)
        self.scorers = [name for name in (*config.scorers, *inputs_of(config.scorers)) if name not in self.task_level]
        self.history = functools.cache(history) if history else None
        self.tiebreak = tiebreak(config.scorers)
        self.previous = {(row.content_hash, row.probe_hash): row for row in previous_rows if row.ranked}
        self.ledger = ledger or Ledger(parse_budget(config.budget))
        self.tally = Tally(events, self.ledger)
        self.started = time.perf_counter()
        self.label_embeddings = functools.cache(label_embeddings) if label_embeddings else None  # once a scan
        wanted = self.label_embeddings and needs_label_embeddings(self.scorers)
        self.embeddings = self.label_embeddings() if wanted else None
        self.rows: dict[str, ScoreRow] = {}
        self.said: set[str] = set()

    def alive(self, specs: list[TeacherSpec], task: Task) -> list[TeacherSpec]:
        """The teachers that can run: the broken ones recorded as failed, the rest said and pre-screened."""
        for spec in specs:
            if spec.error:
                self.fail(spec, spec.error)
            elif spec.warning:
                self.tally.emit("note", spec.teacher_id, f"warning: {spec.warning}")
        alive = [spec for spec in specs if not spec.error]
        if self.config.budget and self.label_embeddings:
            return prescreen(alive, task, self.label_embeddings, self.tally)
        return alive

    def fail(self, spec: TeacherSpec, error: str) -> None:
        self.rows[spec.teacher_id] = failed_row(spec, error)
        self.tally.emit("failed", spec.teacher_id, f"failed  {spec.teacher_id}: {error}")

    def settle(self, row: ScoreRow, status: str, scored: list[ScoreRow]) -> None:
        self.rows[row.teacher_id] = row
        scored.append(row)
        shown = self.scorers[0]
        self.tally.emit(status, row.teacher_id, f"{status:<8}{row.teacher_id}  {shown}={row.scores[shown]:.4f}")

    def answer_from_cache(self, alive: list[TeacherSpec], probe: ProbeSet, round_index: int,
                          scored: list[ScoreRow]) -> list[TeacherSpec]:
        """Settle every teacher the last scan's table or the prediction cache answers; the rest are pending."""
        pending = []
        for spec in alive:
            earlier = self.rows.get(spec.teacher_id)
            reused = reusable(self.previous, spec, probe, self.scorers, self.ranking, earlier)
            if reused is not None:
                self.settle(replace(reused, round=round_index), "cached", scored)
                continue
            cached = self.cached(spec, probe)
            if cached is None:
                pending.append(spec)
            else:
                assessment = assess(spec, cached, probe, self.scorers, self.embeddings)
                self.settle(self.result_row(spec, cached, assessment, probe, "cached", round_index), "cached", scored)
        return pending

    def cached(self, spec: TeacherSpec, probe: ProbeSet) -> Predictions | None:
        bad = len(self.cache.rejected)
        cached = self.cache.get(prediction_key(spec, probe))
        if len(self.cache.rejected) > bad:
            self.tally.emit("note", spec.teacher_id, f"cache entry {self.cache.rejected[-1]}: recomputed")
        return cached

    def run(self, pending: list[TeacherSpec], probe: ProbeSet, round_index: int, run_teachers: RunTeachers,
            scored: list[ScoreRow]) -> None:
        """Run the pending teachers on the runner actors, each admitted only while the budget pays for it."""
        def admit(spec: TeacherSpec) -> bool:
            self.ledger.seconds = time.perf_counter() - self.started
            return self.ledger.charge_if_affordable(spec.flops_per_sample * len(probe))

        by_id = {spec.teacher_id: spec for spec in pending}
        for result in run_teachers(pending, probe, admit, Scoring(self.scorers, self.embeddings)):
            spec = by_id[result.teacher_id]
            if result.skipped:
                self.skip(spec, round_index)
            elif result.error:
                if not result.forward_ran:  # charged before it started; a teacher that never ran costs nothing
                    self.ledger.spend(-spec.flops_per_sample * len(probe))
                self.fail(spec, result.error)
            else:
                self.cache.put(prediction_key(spec, probe), result.predictions)
                assessment = result.assessment or assess(spec, result.predictions, probe, self.scorers, self.embeddings)
                row = self.result_row(spec, result.predictions, assessment, probe, "scored", round_index)
                self.settle(replace(row, node=result.node), "scored", scored)

    def skip(self, spec: TeacherSpec, round_index: int) -> None:
        earlier = self.rows.get(spec.teacher_id)
        self.rows[spec.teacher_id] = (replace(earlier, status=Status.UNFINISHED.value) if earlier else
                                      replace(failed_row(spec, ""), status=Status.SKIPPED.value, round=round_index))
        self.tally.emit("skipped", spec.teacher_id, f"skipped {spec.teacher_id}: budget spent")

    def result_row(self, spec: TeacherSpec, predictions: Predictions, assessment: Assessment, probe: ProbeSet,
                   status: str, round_index: int) -> ScoreRow:
        """One teacher's row after a round; FLOPs and seconds add up over its rounds (0 when cached)."""
        earlier, ran = self.rows.get(spec.teacher_id), status == "scored"
        score = assessment.scores.get(self.ranking, float("nan"))  # a task scorer's comes after the round
        return ScoreRow(spec.teacher_id, spec.path, spec.architecture, spec.content_hash, status, "", None,
                        round_index, "", score, len(probe), probe.probe_hash,
                        (spec.flops_per_sample * len(probe) if ran else 0) + (earlier.flops if earlier else 0),
                        (predictions.seconds if ran else 0.0) + (earlier.seconds if earlier else 0.0),
                        spec.num_classes, tuple(assessment.cost_matrix.ravel().tolist()), assessment.label_plan,
                        round_scores(earlier, score), dict(assessment.scores))

    def rank_task(self, scored: list[ScoreRow], specs: dict[str, TeacherSpec], task: Task) -> list[ScoreRow]:
        """The task scorers' values for this round's teachers (each row's `scores`), and the ranking score
        where a task scorer ranks; their notes (a fallback, a refused fit) said once a scan."""
        if not self.task_level or not scored:
            return scored
        history, problem = self.history() if self.history and "learned" in self.task_level else ({}, "")
        candidates = tuple(Candidate(row.teacher_id, row.scores, specs[row.teacher_id].param_count,
                                     specs[row.teacher_id].flops_per_sample, specs[row.teacher_id].num_classes,
                                     label_overlap(specs[row.teacher_id].label_names, task.label_names))
                           for row in scored)
        values, notes = score_task(self.task_level, TaskEvidence(task.content_hash, candidates, history, problem))
        for note in notes:
            if note not in self.said:
                self.said.add(note)
                self.tally.emit("note", "", note)
        ranked = []
        for index, row in enumerate(scored):
            scores = {**row.scores, **{name: float(v[index]) for name, v in values.items()}}
            score = scores[self.ranking]
            row = replace(row, scores=scores, score=score, round_scores=(*row.round_scores[:-1], score))
            self.rows[row.teacher_id] = row
            ranked.append(row)
        return ranked

    def drop(self, alive: list[TeacherSpec], scored: list[ScoreRow], round_index: int) -> list[TeacherSpec]:
        """Keep the best 1/eta of this round's teachers for the next round; the rest are dropped."""
        ranked = sorted(scored, key=lambda row: score_key(row, self.tiebreak))
        keep = survivors(len(ranked), self.config.eta)
        for row in ranked[keep:]:
            self.rows[row.teacher_id] = replace(row, status=Status.DROPPED.value)
            self.tally.emit("dropped", row.teacher_id, f"dropped {row.teacher_id} after round {round_index + 1}")
        kept = {row.teacher_id for row in ranked[:keep]}
        return [spec for spec in alive if spec.teacher_id in kept]


def run_plan(specs: list[TeacherSpec], task: Task, out_dir: Location, config: ScanConfig, events: Events,
             run_teachers: RunTeachers | None, label_embeddings: Callable[[], dict] | None,
             previous_rows: list[ScoreRow] = (), cache: PredictionCache | None = None,
             ledger: Ledger | None = None, history: History | None = None) -> tuple[list[ScoreRow], Ledger]:
    """Every teacher's row (unranked) and the ledger (`cache`: default OUT/cache; its `rejected` lists the bad
    entries this scan found, each recomputed; `ledger`: a selection's, with the scan's share, else the
    config's budget). `run_teachers(specs, probe, admit, scoring)` runs and
    assesses uncached teachers (the Ray layer); `label_embeddings()` gives name vectors when a scorer or the
    pre-screen needs them; `previous_rows` (the last scores.parquet) answer unchanged teachers without reading
    their predictions; `history()` gives `learned` its past outcomes (by task) or why there are none."""
    rounds = Rounds(config, events, cache or PredictionCache(out_dir / "cache"), list(previous_rows),
                    label_embeddings, ledger, history)
    alive = rounds.alive(specs, task)
    sizes = probe_sizes(config.probe_per_class, config.min_probe, config.eta)
    for round_index, per_class in enumerate(sizes):
        probe = make_probe(task, per_class, config.seed)
        if short := short_classes(probe, per_class):
            rounds.tally.emit("note", "", f"probe of round {round_index + 1}: {per_class} images per class asked; {short}")
        rounds.tally.begin(len(alive), f"round {round_index + 1}/{len(sizes)}: {len(alive)} teachers on a probe "
                                       f"of {len(probe)} images ({per_class_used(probe)} per class)")
        scored: list[ScoreRow] = []
        pending = rounds.answer_from_cache(alive, probe, round_index, scored)
        if pending and run_teachers is not None:
            rounds.run(pending, probe, round_index, run_teachers, scored)
        scored = rounds.rank_task(scored, {spec.teacher_id: spec for spec in alive}, task)
        rounds.ledger.seconds = time.perf_counter() - rounds.started
        rounds.ledger.close_round()
        if round_index < len(sizes) - 1:
            alive = rounds.drop(alive, scored, round_index)
    return list(rounds.rows.values()), rounds.ledger


def short_classes(probe: ProbeSet, per_class: int) -> str:
    """The classes with fewer labelled train images than the probe asks for, in words ('' when none): the
    probe takes all they have, and says so, rather than log a size it did not use."""
    counts = np.bincount(probe.labels, minlength=len(probe.label_names))
    short = [f"'{probe.label_names[i]}' has {int(n)}" for i, n in enumerate(counts) if n < per_class]
    return f"{', '.join(short)} (all of them used)" if short else ""


def per_class_used(probe: ProbeSet) -> str:
    """How many images per class the probe holds: '20', or '17-20' where a class had fewer to give."""
    counts = np.bincount(probe.labels, minlength=len(probe.label_names))
    low, high = int(counts.min()), int(counts.max())
    return f"{low}" if low == high else f"{low}-{high}"


def prescreen(specs: list[TeacherSpec], task: Task, label_embeddings: Callable[[], dict], tally: Tally) -> list[TeacherSpec]:
    """Order teachers by the free semantic score (label names only), best first, so that a budget too small
    for every teacher spends itself on the likeliest ones. Unchanged order when names cannot be embedded."""
    try:
        vectors = label_embeddings()
    except SelkdError as err:
        tally.emit("note", "", f"no semantic pre-screen ({err})")
        return specs
    labels = np.arange(task.num_classes)
    target = np.stack([vectors[n] for n in task.label_names])
    score = {spec.teacher_id: SCORERS.get("semantic")(Evidence(
        None, None, labels, task.num_classes, teacher_label_embeddings=np.stack([vectors[n] for n in spec.label_names]),
        target_label_embeddings=target)) if spec.label_names_known else -np.inf for spec in specs}
    unnamed = sum(not spec.label_names_known for spec in specs)
    tally.emit("note", "", "semantic pre-screen: teachers ordered by label-name transport cost"
               + (f" ({unnamed} without label names last)" if unnamed else ""))
    return sorted(specs, key=lambda spec: (-score[spec.teacher_id], spec.teacher_id))
