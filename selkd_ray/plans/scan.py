"""The scan job: every teacher of a zoo ranked for a task under a budget, into scores.parquet and a report.

Reads top to bottom: check the inputs, index the zoo, run the halving rounds (`halving.run_plan`) on the
runner actors, write the ranked table and the history.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..address import check_address
from ..budget import Budget, Ledger, parse_budget, probe_sizes
from ..config import ScanConfig
from ..errors import SelkdError
from ..io.cache import PredictionCache, prediction_key
from ..io.embeddings import EmbeddingCache
from ..io.fs import Location, writable_folder
from ..io.history import append_history
from ..io.lock import ScanLock
from ..io.results import read_scores, write_scores
from ..progress import Progress, quiet
from ..records import Task, TeacherSpec
from ..rows import HistoryRow, ScoreRow
from ..scoring.probe import make_probe
from ..scoring import SCORERS
from ..scoring.rankers import inputs_of
from ..scoring.ties import uninformative
from ..zoo.index import require_zoo
from .halving import run_plan
from .ranking import rank_rows, tiebreak
from .index import index_zoo
from .inputs import as_task, check_outputs


@dataclass(frozen=True)
class ScanResult:
    scores_path: Path | str  # a Path on the local disk, else the filesystem URI
    catalogue_path: Path | str
    rows: list[ScoreRow]  # ranked: best teacher first, failed teachers last
    ran: int  # teachers run to the last round in this scan
    cached: int  # teachers answered from the cache in the last round
    failed: int
    dropped: int = 0  # dropped by successive halving
    skipped: int = 0  # not run (or not finished) because the budget was spent
    spent: str = ""  # the ledger in words: spent against budget
    flops: int = 0  # forward FLOPs this scan spent
    seconds: float = 0.0
    round_flops: tuple[int, ...] = ()  # cumulative FLOPs at the end of each halving round
    history_path: Path | str | None = None  # history.parquet: one row per scan of this output
    runners: tuple[dict, ...] = ()  # where each runner actor ran (node, resources, GPUs, device), when any ran
    recomputed: tuple[str, ...] = ()  # cache entries found bad (unreadable, another key's, failed checksum): "FILE (why)"
    uninformative: dict = field(default_factory=dict)  # scorer -> why its values tie (scoring/ties.py)

    @property
    def ranked(self) -> list[ScoreRow]:
        return [row for row in self.rows if row.rank is not None]



def scan(zoo_dir: str | Path, task: Task | str | Path, out_dir: str | Path, config: ScanConfig = ScanConfig(),
         address: str | None = None, progress: Progress = quiet, runners=None, ledger: Ledger | None = None) -> ScanResult:
    """Rank every teacher of the zoo for the task, within the budget; cached predictions are reused, failures
    recorded. `progress` receives ScanEvent objects (str() gives a log line).

    `runners`: a `distributed.runners.RunnerPool` to use and leave running, for a driver that scans many tasks
    (a runner actor takes seconds to start); by default each scan starts its own and stops it at the end.
    `ledger`: the budget to charge (a selection's, limited to the scan's share); default `config.budget`."""
    check_config(config, address)
    task = as_task(task, progress, address)  # a bad task, zoo or output table: one line before anything is written
    require_zoo(Path(zoo_dir))
    out_dir = writable_folder(out_dir)  # a local folder or a pyarrow filesystem URI
    check_outputs(out_dir)
    with ScanLock(out_dir):
        scores = out_dir / "scores.parquet"
        previous = read_scores(scores) if scores.is_file() else []
        specs, catalogue_path = index_zoo(zoo_dir, out_dir / "catalogue.parquet", address, progress)
        cache = PredictionCache(out_dir / "cache")
        ledger = ledger or Ledger(parse_budget(config.budget))
        check_budget_floor(specs, task, config, cache, previous, ledger.budget)
        probe_images = probe_sizes(config.probe_per_class, config.min_probe, config.eta)[-1] * task.num_classes
        with RunnersOnDemand(config.max_actors, address, progress, runners, probe_images) as actors:
            rows, ledger = run_plan(specs, task, out_dir, config, progress, actors.run,
                                    lambda: label_embeddings(specs, task, out_dir / "cache"), previous, cache, ledger,
                                    lambda: past_outcomes(experience_folder(config, out_dir)))
        ranked = rank_rows(rows, tiebreak(config.scorers))
        columns = list(dict.fromkeys((*config.scorers, *inputs_of(config.scorers))))  # what the ranking read too
        tied = uninformative(ranked, columns)
        result = replace(scan_result(ranked, write_scores(ranked, columns, scores, tied), catalogue_path, ledger),
                         uninformative=tied)
        known = {row.content_hash for row in previous}
        new = sum(spec.content_hash not in known for spec in specs)
        history = append_history(history_row(result, task, len(specs), new, config, ledger.budget),
                                 out_dir / "history.parquet")
    return replace(result, history_path=history, runners=tuple(actors.placements), recomputed=tuple(cache.rejected))


def experience_folder(config: ScanConfig, out_dir: "Path | Location") -> Location:
    """The experience table `learned` fits on and a selection's race outcomes go to: `--experience`, else
    OUT/experience."""
    return Location(config.experience) if config.experience else Location(out_dir) / "experience"


def past_outcomes(where: Location) -> tuple[dict, str]:
    """The experience's outcomes by task for `learned`, or why it has none: a bad table is one line naming
    the file and field, and the ranking falls back (nothing in the table is changed by reading it)."""
    from ..experience import history_of
    from ..io.experience import read_experience

    try:
        return history_of(read_experience(where, set(SCORERS.names()))), ""
    except SelkdError as err:
        return {}, f"experience not used: {err}"


def check_config(config: ScanConfig, address: str | None) -> None:
    """Scorer names, the budget, the halving schedule and the address: one line each, before any work."""
    for name in config.scorers:
        SCORERS.get(name, "--scorer")
    parse_budget(config.budget)
    probe_sizes(config.probe_per_class, config.min_probe, config.eta)
    check_address(address)


def scan_result(ranked: list[ScoreRow], scores_path: Path | str, catalogue_path: Path | str,
                ledger: Ledger) -> ScanResult:
    count = lambda *statuses: sum(row.status in statuses for row in ranked)  # noqa: E731
    return ScanResult(scores_path, catalogue_path, ranked, count("scored"), count("cached"), count("failed"),
                      count("dropped"), count("skipped", "unfinished"), ledger.describe(), ledger.flops,
                      ledger.seconds, tuple(ledger.round_flops))


class RunnersOnDemand:
    """The engine's runner actors for one scan, started on the first teacher that needs running (a scan the
    cache answers starts no Ray), stopped at the end unless the caller lent its own pool."""

    def __init__(self, max_actors: int | None, address: str | None, progress: Progress, lent=None,
                 probe_images: int = 0) -> None:
        self.max_actors, self.address, self.progress, self.lent = max_actors, address, progress, lent
        self.probe_images = probe_images  # the last round's probe: what a teacher's pass costs at most
        self.pool, self.placements = lent, []

    def run(self, pending: list[TeacherSpec], probe, admit, scoring):
        if self.pool is None:
            from ..distributed.runtime import connect
            from ..distributed.runners import RunnerPool

            connect(self.address)
            work = sum(spec.flops_per_sample for spec in pending) * max(self.probe_images, len(probe))
            self.pool = RunnerPool(self.max_actors, len(pending), work)
            if sizing := self.pool.sizing(self.max_actors, len(pending)):
                self.progress(f"note: {sizing}")
        if not self.placements:
            self.placements.extend(self.pool.placements())
            for warning in sorted({p["warning"] for p in self.placements if p["warning"]}):
                self.progress(f"warning: runner actors: {warning}")
        return self.pool.run(pending, probe, admit, scoring)

    def __enter__(self) -> "RunnersOnDemand":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None and self.pool is not self.lent:
            self.pool.close()


def check_budget_floor(specs: list[TeacherSpec], task: Task, config: ScanConfig, cache: PredictionCache,
                       previous: list[ScoreRow], budget: Budget | None) -> None:
    """A FLOPs budget that cannot pay for a single teacher on the first round's probe (and no teacher is free
    from the cache) would skip them all: refused in one line before any work, naming the cheapest teacher."""
    alive = [spec for spec in specs if not spec.error]
    if budget is None or budget.kind != "flops" or not alive:
        return
    probe = make_probe(task, probe_sizes(config.probe_per_class, config.min_probe, config.eta)[0], config.seed)
    answered = {(row.content_hash, row.probe_hash) for row in previous}
    if any((s.content_hash, probe.probe_hash) in answered or prediction_key(s, probe) in cache for s in alive):
        return
    cheapest = min(alive, key=lambda spec: spec.flops_per_sample)
    cost = cheapest.flops_per_sample * len(probe)
    if cost > budget.amount:
        raise SelkdError(f"--budget: {budget} does not cover one teacher: the cheapest, {cheapest.teacher_id}, "
                         f"costs {cost:.3g} FLOPs on the first round's probe of {len(probe)} images")


def history_row(result: ScanResult, task: Task, zoo_size: int, new: int, config: ScanConfig, budget,
                top_k: int = 5) -> HistoryRow:
    """What the history table keeps of one scan. `new`: teachers (new or changed files) the previous scan of
    this output had not seen."""
    top = result.ranked[:top_k]
    return HistoryRow(datetime.now(timezone.utc).isoformat(timespec="seconds"), task.name, task.content_hash,
                      zoo_size, new, sum(row.flops > 0 for row in result.rows), result.cached, result.failed,
                      result.dropped, result.skipped, result.flops, result.seconds, config.budget or "",
                      budget.amount if budget is not None and budget.kind == "flops" else None,
                      tuple(result.round_flops), config.scorers[0], tuple(row.teacher_id for row in top),
                      tuple(float(row.score) for row in top))


def label_embeddings(specs: list[TeacherSpec], task: Task, cache_dir: Location) -> dict[str, np.ndarray]:
    """Unit text embeddings of every label name in the zoo and the task, cached on disk by name."""
    from ..models.text import TEXT_MODEL, embed_label_names

    names = sorted({name for spec in specs if spec.label_names_known for name in spec.label_names}
                   | set(task.label_names))
    return EmbeddingCache(cache_dir, TEXT_MODEL).lookup(names, embed_label_names)
