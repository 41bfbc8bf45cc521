"""The rows of the tables the jobs write, as typed records: a teacher's score row (scores.parquet), a scan's
history row (history.parquet), a selection's trial, stage and decision rows (selection.parquet), and a
student's epochs (its metrics table).

Each Parquet schema is derived from its record's fields in one place (`io/schema.schema_of`); a field's
`column` metadata names an Arrow type where the Python type alone does not decide it. No pyarrow here.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, TypeVar

R = TypeVar("R")


def int32(default: Any = None) -> Any:
    return field(default=default, metadata={"column": "int32"})


class Status(str, Enum):
    """Where a teacher's scan ended."""

    SCORED = "scored"  # run on this scan's last round probe
    CACHED = "cached"  # answered from the cache (or the last scan's row) on that probe
    DROPPED = "dropped"  # dropped by successive halving after an earlier round
    UNFINISHED = "unfinished"  # ran in an earlier round, not in a later one: the budget was spent
    SKIPPED = "skipped"  # never ran: the budget was spent
    FAILED = "failed"  # could not be indexed, loaded or run

    @property
    def ranked(self) -> bool:
        return self in (Status.SCORED, Status.CACHED, Status.DROPPED, Status.UNFINISHED)


@dataclass(frozen=True)
class ScoreRow:
    """One teacher's row of scores.parquet: where its scan ended, its scores and what it cost."""

    teacher_id: str
    path: str
    architecture: str
    content_hash: str
    status: str  # a Status value
    error: str = ""
    rank: int | None = int32()  # 1 = best; teachers that never ran have no rank
    round: int | None = int32()  # the last halving round the teacher was scored in (0-based)
    node: str = ""  # the Ray node that ran it ('' when cached)
    score: float | None = None  # the ranking scorer's value (None for teachers that never ran)
    probe_size: int | None = int32()  # probe images of its last round
    probe_hash: str | None = None  # content hash of that probe: a rescan reuses the row when it matches
    flops: int = 0  # forward FLOPs spent on this teacher in this scan, over its rounds (0 when cached)
    seconds: float = 0.0
    num_teacher_classes: int | None = int32()
    cost_matrix: tuple[float, ...] = ()  # conditional cost M (C_T x C_S), row-major, from the whole probe
    label_plan: str | None = None  # which teacher class carries onto each target class
    round_scores: tuple[float, ...] = ()  # the ranking score after each halving round it reached
    scores: dict[str, float] = field(default_factory=dict, metadata={"expand": "score_"})  # every scorer's value

    CORE: ClassVar[tuple[str, ...]] = ("teacher_id", "status", "content_hash", "score", "rank")  # in every version

    @property
    def ranked(self) -> bool:
        return Status(self.status).ranked

    def score_of(self, scorer: str) -> float:
        """This scorer's value (NaN where the teacher lacks its inputs or the row predates the scorer)."""
        value = self.scores.get(scorer)
        return math.nan if value is None else value


@dataclass(frozen=True)
class HistoryRow:
    """What the history table keeps of one scan: counts, cost, and the top teachers with their scores."""

    scanned_at: str  # ISO 8601, UTC, when the scan finished
    task: str  # task name
    task_hash: str
    zoo_size: int = int32(0)  # teachers in the catalogue
    new: int = int32(0)  # teachers (new or changed files) the previous scan of this output had not seen
    ran: int = int32(0)  # teachers that cost FLOPs in this scan (new ones, or cached ones on a larger probe)
    cached: int = int32(0)  # answered from the cache or the last scan
    failed: int = int32(0)
    dropped: int = int32(0)  # dropped by successive halving
    skipped: int = int32(0)  # left out by the budget
    flops: int = 0  # forward FLOPs this scan spent
    seconds: float = 0.0
    budget: str = ""  # the budget as given ('' for none)
    budget_flops: float | None = None  # the FLOPs budget (None when none or a time budget)
    round_flops: tuple[int, ...] = ()  # cumulative FLOPs at the end of each halving round
    scorer: str = ""  # the ranking scorer
    top_teachers: tuple[str, ...] = ()  # best first
    top_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrialRow:
    """One race candidate: a teacher (or labels only) at one OT weight."""

    candidate: str  # teacher id or 'labels-only'
    lam: float  # weight of the OT term
    epochs: int = int32(0)  # epochs it ran before it finished or was stopped
    val_accuracy: float = 0.0  # its best validation accuracy
    flops: float = 0.0  # training FLOPs it spent
    status: str = ""  # winner / finished / stopped early / failed: why
    gpu: float = 0.0  # the share of a GPU the trial held
    device: str = ""  # where it trained
    weights: str = ""  # a mixture's members and weights ("0.62 a + 0.38 b"); "" for one teacher or label-only
    correct: str = ""  # its best epoch's validation images, 'y' right / 'n' wrong: what the race and guard paired
    kind: str = "trial"


@dataclass(frozen=True)
class StageRow:
    """What one stage of a selection spent: the scan, the teachers' outputs, the race, a final student."""

    candidate: str  # the stage's name
    flops: float  # forward FLOPs for the scan and the outputs, training FLOPs for the race and the students
    seconds: float
    val_accuracy: float | None = None  # a final student's
    test_accuracy: float | None = None
    epochs: int | None = int32()  # the race: its longest trial's epochs
    budget: float | None = None  # the whole selection's FLOPs budget
    kind: str = "stage"


@dataclass(frozen=True)
class DecisionRow:
    """The guard's decision: which student the selection keeps, and why in words."""

    candidate: str  # the race winner's teacher id
    lam: float
    val_accuracy: float
    test_accuracy: float
    kept: str  # 'distilled' or 'labels-only'
    message: str
    flops: float  # everything the selection spent
    seconds: float
    status: str = "kept"
    kind: str = "decision"
    # what decided it: which images and students (in words), their paired counts (images only the distilled
    # student gets right, only label-only does, of how many), the prior from past races and where it came from
    # (none: 0 tasks), and the difference's posterior mean and sd the guard weighed
    evidence: str = ""
    better: int = int32(0)
    worse: int = int32(0)
    images: int = int32(0)
    prior_mean: float = 0.0
    prior_sd: float = 0.0
    prior_tasks: int = int32(0)
    prior_source: str = ""
    posterior_mean: float = 0.0
    posterior_sd: float = 0.0


@dataclass(frozen=True)
class EpochRow:
    """One epoch of a student's training, as its metrics table keeps it."""

    epoch: int  # 0-based
    loss: float  # mean training loss
    val_accuracy: float
    flops: int  # cumulative FLOPs at its end (training steps and validation passes, every worker)
    seconds: float  # the training pass alone
    test_accuracy: float | None = None  # on the kept epoch only
    best: bool = False  # the epoch whose weights the student keeps (best validation accuracy)


@dataclass(frozen=True)
class ExperienceRow:
    """One (task, teacher) outcome a selection observed: what was known of the pair before any training (the
    task's size, the teacher's static facts, every scorer's value normalised within the task's scan) and what the
    race then measured. The ground truth a ranking can learn from."""

    task_hash: str
    task: str  # the task's name
    task_images: int = int32(0)  # labelled training images
    task_classes: int = int32(0)
    teacher_id: str = ""
    teacher_hash: str = ""  # the teacher's content hash: the same weights under another id are the same teacher
    architecture: str = ""
    params: int = 0
    flops_per_sample: int = 0
    teacher_classes: int = int32(0)
    label_overlap: float = 0.0  # share of the target's label names among the teacher's (case and spaces aside)
    teachers_scanned: int = int32(0)  # the ranked teachers the scores are normalised over
    probe_size: int | None = int32()
    # each scorer's within-task rank, scaled to [0, 1] (1: the scan's best teacher by that scorer; ties share the
    # mean rank; NaN where the scorer gave no value)
    scores: dict[str, float] = field(default_factory=dict, metadata={"expand": "rank_"})
    outcome: float = 0.0  # the teacher's best race trial's validation accuracy less the label-only trial's
    val_accuracy: float = 0.0  # the teacher's best trial
    labels_only_accuracy: float = 0.0  # the label-only trial's, on the same validation images
    lam: float = 0.0  # the OT weight of the teacher's best trial
    epochs: int = int32(0)  # epochs the teacher's best trial ran
    labels_only_epochs: int = int32(0)
    validation_images: int = int32(0)
    source: str = "race"  # which stage measured it
    recorded_at: str = ""  # ISO 8601, UTC


SELECTION_ROWS = (TrialRow, StageRow, DecisionRow)  # one table, the columns of all three


def as_row(record: Any) -> dict[str, Any]:
    """A record as a table row: a field marked `expand` becomes one column per key (score_nce, ...)."""
    row = asdict(record)
    for spec in fields(record):
        prefix = spec.metadata.get("expand")
        if prefix is not None:
            row.update({f"{prefix}{key}": value for key, value in row.pop(spec.name).items()})
    return row


def from_row(kind: type[R], row: dict[str, Any]) -> R:
    """A record from a table row: columns it lacks, and nulls where the record has a value, take the field's
    default; lists become tuples."""
    values: dict[str, Any] = {}
    for spec in fields(kind):  # type: ignore[arg-type]
        prefix = spec.metadata.get("expand")
        if prefix is not None:
            values[spec.name] = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}
            continue
        value = row.get(spec.name)
        if value is None and (spec.default is not MISSING and spec.default is not None or spec.name not in row):
            continue
        values[spec.name] = tuple(value) if isinstance(value, list) else value
    return kind(**values)
