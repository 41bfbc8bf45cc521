"""What every plan reads before it works: the task, the output tables it will append to, a scan's cost matrix.

A bad input stops the command in one line here, before anything is written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SelkdError
from ..io.catalogue import read_catalogue
from ..io.fs import Location
from ..io.history import read_history
from ..io.results import read_scores, read_selection
from ..io.tasks import load_task
from ..progress import Progress, quiet
from ..records import Task


def as_task(task: Task | str | Path, progress: Progress = quiet, address: str | None = None) -> Task:
    """The task, read from its files when given a path (a large one surveyed on Ray Data, at `address` or an
    embedded Ray); each image left out as unreadable is said once, here."""
    from ..distributed.task_data import surveyor

    if isinstance(task, Task):
        return task
    where = str(task)
    task = load_task(task, surveyor(address))
    for line in task.skipped:
        progress(f"warning: {line}")
    if line := held_out_seen(task, where):
        progress(f"warning: {line}")
    return task


def held_out_seen(task: Task, where: str) -> str:
    """A line when val or test images are also in train or unlabelled (the same content, by the hashes the
    read already took): what is measured on them is not held out. '' when none."""
    seen = task.row_hashes[task.indices("train", "unlabelled")]
    held = task.indices("val", "test")
    repeated = held[np.isin(task.row_hashes[held], seen)]
    if not len(repeated):
        return ""
    counts = ", ".join(f"{int(np.sum(task.splits[repeated] == split))} {split}" for split in ("val", "test")
                       if np.any(task.splits[repeated] == split))
    return (f"{where}: {len(repeated)} held-out image(s) ({counts}) are also in train or unlabelled (the same "
            f"content): accuracy on them is not held out")


def check_outputs(out_dir: Location) -> None:
    """Read every table of an output folder that a command will read or append to (scores, history, catalogue,
    selection): a bad one stops the command in one line before it takes the folder's lock or does any work."""
    for name, read in (("scores.parquet", read_scores), ("history.parquet", read_history),
                       ("catalogue.parquet", read_catalogue), ("selection.parquet", read_selection)):
        if (out_dir / name).is_file():
            read(out_dir / name)


def cost_from_scan(scores_path: str | Path, teacher: str | Path, num_target_classes: int) -> np.ndarray | None:
    """The teacher's cost matrix from a scan's scores.parquet: the row of the teacher folder (by its path, or
    by an id equal to the folder's name for a flat zoo)."""
    if not Location(scores_path).is_file():
        raise SelkdError(f"{scores_path}: no such file; expected the scores.parquet of a scan (--scan)")
    for row in read_scores(scores_path):
        if row_of(row, teacher) and row.cost_matrix:
            return np.asarray(row.cost_matrix).reshape(row.num_teacher_classes, num_target_classes)
    return None


def weights_from_scan(scores_path: str | Path, teachers: list, temperature: float = 1.0) -> tuple[float, ...]:
    """Several teachers' weights from a scan: the softmax of their ranking scores standardised over every
    ranked teacher of that scan (`mixture.score_weights`); a teacher the scan did not rank is one line."""
    from ..mixture import score_weights

    rows = [row for row in read_scores(scores_path) if row.rank is not None]
    mine = []
    for teacher in teachers:
        found = [r for r in rows if row_of(r, teacher)]
        if not found:
            raise SelkdError(f"--scan: {scores_path} ranks no teacher {teacher}; weights need every teacher's score "
                             "(or give --weights)")
        mine.append(found[0].score)
    return score_weights(mine, [r.score for r in rows], temperature)


def row_of(row, teacher: str | Path) -> bool:
    """Whether a scan's row is this teacher's: by the folder's path, or by an id equal to the folder's name
    for a flat zoo."""
    return row.path == str(Path(teacher).resolve()) or row.teacher_id == str(teacher)
