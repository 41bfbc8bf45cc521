"""A teacher's outputs over the student's images, as a Ray Data pipeline over an actor pool.

Row numbers stream through `map_batches`; each actor of the pool (`ActorPoolStrategy`: one per GPU, else one
per CPU slot) loads the teacher once through the one forward path, decodes its batch of rows from the task's
files itself and hands back softmax outputs. The driver holds row numbers and outputs, never images.
"""
from __future__ import annotations

import numpy as np
import ray

from ..errors import SelkdError
from ..models.forward import ForwardPath, choose_device
from ..progress import Progress, Step, quiet
from ..records import TaskRows, TeacherSpec
from ..training.student_data import ROWS_PER_BATCH, probs_on_rows
from .runtime import actor_options, quiet_data, selkd_error_in



class TeacherOnRows:
    """One actor of the pool: the teacher, loaded once, run on batches of the pool's row numbers."""

    def __init__(self, spec: TeacherSpec, rows: TaskRows) -> None:
        self.spec, self.rows = spec, rows
        self.forward = ForwardPath.for_teacher(spec, choose_device(len(ray.get_gpu_ids())).device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = np.asarray(batch["id"], dtype=np.int64)
        return {"id": index, "probs": probs_on_rows(self.forward, self.spec, self.rows[index])}


def teacher_outputs(spec: TeacherSpec, rows: TaskRows, progress: Progress = quiet) -> np.ndarray:
    """Softmax outputs (n, C_T) of the teacher on these rows, in their order."""
    actors, resources = actor_options()
    actors = max(1, min(actors, -(-len(rows) // ROWS_PER_BATCH)))
    quiet_data()
    dataset = ray.data.from_numpy(np.arange(len(rows), dtype=np.int64)).rename_columns({"data": "id"})
    outputs = dataset.map_batches(TeacherOnRows, fn_constructor_args=(spec, rows), batch_size=ROWS_PER_BATCH,
                                  compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors), **resources)
    probs, done = np.zeros((len(rows), spec.num_classes), np.float32), 0
    try:
        for batch in outputs.iter_batches(batch_size=None, batch_format="numpy"):
            probs[batch["id"]] = batch["probs"]
            done += len(batch["id"])
            text = f"teacher outputs: {spec.teacher_id} on {done}/{len(rows)} student images"
            progress(Step("outputs", done, len(rows), text, text, logged=done == len(rows)))
    except Exception as err:  # noqa: BLE001 - Ray Data wraps the actor's error; say it in one line
        ours = selkd_error_in(err)
        lines = [line for line in str(err).splitlines() if line.strip()]
        raise SelkdError(str(ours).splitlines()[0] if ours else f"{spec.path}: teacher outputs failed: "
                         f"{lines[-1] if lines else type(err).__name__}") from None
    return probs
