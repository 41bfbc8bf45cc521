"""The scan's plan, run from the driver: pre-screen, successive-halving rounds under a budget, the ranking.

Each round scores the surviving teachers on a nested probe (cached predictions cost nothing), keeps the best
1/eta, and gives them a probe eta times larger. Results stream into the cache as they arrive, so a killed
scan restarts where it stopped; the driver keeps only small rows, never predictions.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..scoring.assessment import assess
from ..budget import Ledger, parse_budget, probe_sizes, survivors
from ..config import ScanConfig
from ..io.cache import PredictionCache, prediction_key
from ..io.fs import Location
from ..progress import Step
from ..scoring.probe import make_probe
from ..records import Predictions, ProbeSet, Task, TeacherSpec
from ..scoring.runner import Scoring
from ..scoring.scores import needs_label_embeddings


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


def run_plan(specs: list[TeacherSpec], task: Task, out_dir: Location, config: ScanConfig, events: Events,
             run_teachers: Callable | None, label_embeddings: Callable[[], dict] | None,
             previous_rows: list[dict] = (), cache: PredictionCache | None = None) -> tuple[list[dict], Ledger]:
    """Every teacher's row (unranked) and the ledger (`cache`: default OUT/cache; its `rejected` lists the bad
    entries this scan found, each recomputed). `run_teachers(specs, probe, admit, scoring)` runs and
    assesses uncached teachers (the Ray layer); `label_embeddings()` gives name vectors when a scorer or the
    pre-screen needs them; `previous_rows` (the last scores.parquet) answer unchanged teachers without reading
    their predictions."""
    previous = {(row["content_hash"], row.get("probe_hash")): row for row in previous_rows
                if row.get("status") in RANKED}
    ledger = Ledger(parse_budget(config.budget))
    tally = Tally(events, ledger)
    started = time.perf_counter()
    cache = cache or PredictionCache(out_dir / "cache")
    scorers = list(config.scorers)
    if label_embeddings is not None:
        label_embeddings = functools.cache(label_embeddings)  # read (or embed) the names once per scan
    embeddings = label_embeddings() if label_embeddings and needs_label_embeddings(scorers) else None
    rows: dict[str, dict] = {}
    for spec in specs:
        if spec.error:
            rows[spec.teacher_id] = failed_row(spec, spec.error)
            tally.emit("failed", spec.teacher_id, f"failed  {spec.teacher_id}: {spec.error}")
    alive = [spec for spec in specs if not spec.error]
    for spec in alive:
        if spec.warning:
            tally.emit("note", spec.teacher_id, f"warning: {spec.warning}")
    alive = prescreen(alive, task, label_embeddings, tally) if config.budget and label_embeddings else alive
    sizes = probe_sizes(config.probe_per_class, config.min_probe, config.eta)
    for round_index, per_class in enumerate(sizes):
        probe = make_probe(task, per_class, config.seed)
        if short := short_classes(probe, per_class):
            tally.emit("note", "", f"probe of round {round_index + 1}: {per_class} images per class asked; {short}")
        tally.begin(len(alive), f"round {round_index + 1}/{len(sizes)}: {len(alive)} teachers on a probe of "
                                f"{len(probe)} images ({per_class} per class)")
        scored: list[dict] = []

        def settle(spec: TeacherSpec, predictions: Predictions, status: str, node: str = "",
                   assessment: dict | None = None) -> None:
            assessment = assessment or assess(spec, predictions, probe, scorers, embeddings)
            row = result_row(spec, predictions, assessment, config, probe, status, rows.get(spec.teacher_id))
            rows[spec.teacher_id] = {**row, "round": round_index, "node": node}
            scored.append(rows[spec.teacher_id])
            tally.emit(status, spec.teacher_id, f"{status:<8}{spec.teacher_id}  {scorers[0]}={row['score']:.4f}")

        pending = []
        for spec in alive:
            reused = reusable(previous, spec, probe, scorers, rows.get(spec.teacher_id))
            if reused is not None:
                rows[spec.teacher_id] = {**reused, "round": round_index}
                scored.append(rows[spec.teacher_id])
                tally.emit("cached", spec.teacher_id, f"cached  {spec.teacher_id}  {scorers[0]}={reused['score']:.4f}")
                continue
            bad = len(cache.rejected)
            cached = cache.get(prediction_key(spec, probe))
            if len(cache.rejected) > bad:
                tally.emit("note", spec.teacher_id, f"cache entry {cache.rejected[-1]}: recomputed")
            if cached is None:
                pending.append(spec)
            else:
                settle(spec, cached, "cached")
        if pending and run_teachers is not None:
            def admit(spec: TeacherSpec) -> bool:
                ledger.seconds = time.perf_counter() - started
                cost = spec.flops_per_sample * len(probe)
                if not ledger.affords(cost):
                    return False
                ledger.spend(cost)
                return True

            by_id = {spec.teacher_id: spec for spec in pending}
            for result in run_teachers(pending, probe, admit, Scoring(scorers, embeddings)):
                spec = by_id[result.teacher_id]
                if result.skipped:
                    earlier = rows.get(spec.teacher_id)
                    rows[spec.teacher_id] = ({**earlier, "status": "unfinished"} if earlier else
                                             {**failed_row(spec, ""), "status": "skipped", "round": round_index})
                    tally.emit("skipped", spec.teacher_id, f"skipped {spec.teacher_id}: budget spent")
                elif result.error:
                    if not result.forward_ran:  # committed before it started; a teacher that never ran costs nothing
                        ledger.spend(-spec.flops_per_sample * len(probe))
                    rows[spec.teacher_id] = failed_row(spec, result.error)
                    tally.emit("failed", spec.teacher_id, f"failed  {spec.teacher_id}: {result.error}")
                else:
                    cache.put(prediction_key(spec, probe), result.predictions)
                    settle(spec, result.predictions, "scored", result.node, result.assessment)
        ledger.seconds = time.perf_counter() - started
        ledger.close_round()
        if round_index == len(sizes) - 1:
            break
        ranked = sorted(scored, key=score_key)
        keep = survivors(len(ranked), config.eta)
        for row in ranked[keep:]:
            rows[row["teacher_id"]] = {**row, "status": "dropped"}
            tally.emit("dropped", row["teacher_id"], f"dropped {row['teacher_id']} after round {round_index + 1}")
        kept = {row["teacher_id"] for row in ranked[:keep]}
        alive = [spec for spec in alive if spec.teacher_id in kept]
    return list(rows.values()), ledger


def short_classes(probe: ProbeSet, per_class: int) -> str:
    """The classes with fewer labelled train images than the probe asks for, in words ('' when none): the
    probe takes all they have, and says so, rather than log a size it did not use."""
    counts = np.bincount(probe.labels, minlength=len(probe.label_names))
    short = [f"'{probe.label_names[i]}' has {int(n)}" for i, n in enumerate(counts) if n < per_class]
    return f"{', '.join(short)} (all of them used)" if short else ""


def prescreen(specs: list[TeacherSpec], task: Task, label_embeddings: Callable[[], dict], tally: Tally) -> list[TeacherSpec]:
    """Order teachers by the free semantic score (label names only), best first, so that a budget too small
    for every teacher spends itself on the likeliest ones. Unchanged order when names cannot be embedded."""
    from ..errors import SelkdError
    from ..records import Evidence
    from ..scoring.scores import SCORERS

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


def reusable(previous: dict, spec: TeacherSpec, probe: ProbeSet, scorers: list[str],
             earlier: dict | None) -> dict | None:
    """The last scan's row for this teacher on this very probe, if it holds every requested score: a rescan
    of an unchanged zoo then reads one table instead of every teacher's predictions. It costs nothing now, so
    the row carries only what this scan spent on the teacher in `earlier` rounds."""
    row = previous.get((spec.content_hash, probe.probe_hash))
    if row is None or any(row.get(f"score_{name}") is None for name in scorers):
        return None
    return {**{k: v for k, v in row.items() if not k.startswith("score_") or k[6:] in scorers},
            "teacher_id": spec.teacher_id, "path": spec.path, "status": "cached",
            "flops": (earlier or {}).get("flops", 0), "seconds": (earlier or {}).get("seconds", 0.0),
            "node": "", "score": row[f"score_{scorers[0]}"],
            "round_scores": round_scores(earlier, row[f"score_{scorers[0]}"])}


def score_key(row: dict) -> tuple:
    """Best first; a NaN score (a scorer this teacher lacks inputs for) after every number; ties by id."""
    unscored = not np.isfinite(row["score"])
    return (unscored, 0.0 if unscored else -row["score"], row["teacher_id"])


def result_row(spec: TeacherSpec, predictions: Predictions, assessment: dict, config: ScanConfig, probe: ProbeSet,
               status: str, previous: dict | None) -> dict:
    """One teacher's row after a round; FLOPs and seconds add up over its rounds (0 when cached)."""
    scores = assessment["scores"]
    ran = status == "scored"
    flops = spec.flops_per_sample * len(probe) if ran else 0
    seconds = predictions.seconds if ran else 0.0
    return {"teacher_id": spec.teacher_id, "path": spec.path, "architecture": spec.architecture,
            "content_hash": spec.content_hash, "status": status, "error": "",
            "score": scores[config.scorers[0]], "probe_size": len(probe), "probe_hash": probe.probe_hash,
            "flops": flops + (previous or {}).get("flops", 0),
            "seconds": seconds + (previous or {}).get("seconds", 0.0), "num_teacher_classes": spec.num_classes,
            "cost_matrix": assessment["cost_matrix"].ravel().tolist(), "label_plan": assessment["label_plan"],
            "round_scores": round_scores(previous, scores[config.scorers[0]]),
            **{f"score_{k}": v for k, v in scores.items()}}


def round_scores(earlier: dict | None, score: float) -> list[float]:
    """The ranking score after every round this teacher has reached in this scan, this one last."""
    return [*((earlier or {}).get("round_scores") or []), float(score)]


def failed_row(spec: TeacherSpec, error: str) -> dict:
    return {"teacher_id": spec.teacher_id, "path": spec.path, "architecture": spec.architecture,
            "content_hash": spec.content_hash, "status": "failed", "error": error, "flops": 0, "seconds": 0.0}


FINISHED = ("scored", "cached")
RANKED = FINISHED + ("dropped", "unfinished")


def rank_rows(rows: list[dict]) -> list[dict]:
    """Teachers that reached a later round first (they beat the others there), then by score; teachers that
    never ran (failed, skipped) last, unranked."""
    good = sorted((r for r in rows if r["status"] in RANKED), key=lambda r: (-r.get("round", 0), *score_key(r)))
    bad = sorted((r for r in rows if r["status"] not in RANKED), key=lambda r: (r["status"], r["teacher_id"]))
    return [{**row, "rank": i + 1} for i, row in enumerate(good)] + [{**row, "rank": None} for row in bad]
