"""The race: short distillations of the shortlisted teachers (and a label-only reference) as Ray Tune trials
under an ASHA scheduler, which stops the weak ones early. Each trial is the plain student loop
(`training.fit_epochs`) reporting its best validation accuracy after every epoch.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from ..config import DistillConfig
from ..models.forward import choose_device, place
from ..training.data import StudentData, ready
from ..selection import LABELS_ONLY
from ..training.loop import LoopState, fit_epochs, loaders, new_student
from .runtime import cpu_slots, gpu_count

METRIC = "best_val_accuracy"


class ReferenceKeepingASHA(ASHAScheduler):
    """ASHA that never stops the label-only reference early: the race's verdict against labels alone pairs each
    finished trial with it, image by image, after the same epochs (`selection.cross_fitted`). Its results still
    enter the rungs, so it sets the bar for the others as before."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        reference = trial.config.get("trial", {}).get("candidate") == LABELS_ONLY
        if action == self.STOP and reference and result.get(self._time_attr, 0) < self._max_t:
            self._num_stopped -= 1
            return self.CONTINUE
        return action


@dataclass(frozen=True)
class TrialResult:
    candidate: str  # the key into the race's data (teacher id or labels-only)
    lam: float
    epochs: int  # epochs it ran before finishing or being stopped
    best_val_accuracy: float
    flops: float
    error: str = ""  # why the trial failed ('' when it ran)
    gpu: float = 0.0  # the share of a GPU Ray gave the trial
    device: str = "cpu"  # where it trained (cpu when its node declared a GPU that torch cannot use)
    correct: str = ""  # its best epoch's validation images, 'y' right / 'n' wrong (the race pairs trials)

    @property
    def val_correct(self) -> np.ndarray:
        return np.array([c == "y" for c in self.correct], bool)


def race_trial(space: dict, data: dict, base: dict) -> None:
    """One Tune trial: distil for up to `base['epochs']` epochs, report after each one."""
    torch.set_num_threads(1)
    trial = space["trial"]
    config = DistillConfig(**{**base, "lam": trial["lam"], "loss": trial["loss"]})
    student_data: StudentData = ready(data[trial["candidate"]])  # decoded in the trial, not on the driver
    gpu = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    device = choose_device(len(ray.get_gpu_ids())).device
    student, optimizer = new_student(student_data, config)
    student = place(student, device)  # in place: the optimiser's parameters move with it
    labelled_loader, all_loader = loaders(student_data, config)

    def report(state: LoopState) -> None:
        tune.report({METRIC: state.best_val, "val_accuracy": state.history[-1]["val_accuracy"],
                     "flops": float(state.flops), "epoch": state.epoch + 1, "gpu": gpu,
                     "device": str(device), "best_correct": state.best_correct})

    fit_epochs(student, optimizer, student_data, config, device, labelled_loader, all_loader, after_epoch=report)


def trial_resources(trials_per_gpu: int) -> dict[str, float]:
    """One CPU slot per trial, plus 1/trials_per_gpu of a GPU where the cluster has GPUs, so several short
    distillations share one device."""
    if gpu_count() and trials_per_gpu >= 1:
        return {"cpu": 1, "gpu": 1.0 / trials_per_gpu}
    return {"cpu": 1}


def restored_results(tuner: tune.Tuner):
    """A restored race's results as its files hold them; None when nothing was recorded yet."""
    try:
        return tuner.get_results()
    except RuntimeError:  # Tune found no experiment state to read
        return None


def race_state(experiment: Path) -> str:
    """'new' (no folder), 'whole' (Ray Tune wrote both its tuner and an experiment state that reads back) or
    'incomplete' (a stop came before Tune recorded its state: restoring it fails, so it starts afresh)."""
    if not experiment.exists():
        return "new"
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not (experiment / "tuner.pkl").is_file() or not states:
        return "incomplete"
    try:
        json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return "incomplete"
    return "whole"


def every_trial_ended(grid) -> bool:
    """Whether a restored race has nothing left to run: every trial finished or was stopped by ASHA (an errored
    or unfinished one runs again)."""
    return len(grid) > 0 and grid.num_terminated == len(grid)


def run_race(data: dict[str, StudentData], trials: list[dict], config: DistillConfig, epochs: int,
             grace: int, reduction_factor: int, storage: str | Path, name: str,
             time_budget_s: float | None = None, trials_per_gpu: int = 4) -> list[TrialResult]:
    """Run every trial ({'candidate', 'lam', 'loss'}) for at most `epochs` epochs; ASHA stops the weak.
    `name` must key every input: a race started again under its name is restored, not rerun."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's console tables: progress goes through `progress`
    # Tune's own SIGINT handler ends the run "gracefully" and fit() returns the trials so far, which would be
    # raced to a winner as if they had finished: Ctrl-C must reach the CLI as KeyboardInterrupt instead
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    base = {**dataclasses.asdict(config), "epochs": epochs, "patience": None, "max_flops": None,
            "num_workers": 1, "augment": False}
    scheduler = ReferenceKeepingASHA(time_attr="training_iteration", max_t=epochs, grace_period=min(grace, epochs),
                              reduction_factor=reduction_factor)
    trainable = tune.with_resources(tune.with_parameters(race_trial, data=data, base=base),
                                    trial_resources(trials_per_gpu))
    # a restored race's unfinished trials have no results yet: Tune's multi-line warning about them is not ours
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    experiment = Path(storage).resolve() / name
    state = race_state(experiment)
    if state == "incomplete":  # nothing in it can be proven finished: start afresh
        shutil.rmtree(experiment)
    if state == "whole":  # the same race again: finished trials stand, unfinished ones rerun
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
        grid = restored_results(tuner)  # as it stands: a race that ended needs no Tune start to be reported
        if grid is None or not every_trial_ended(grid):
            grid = tuner.fit()
    else:
        tuner = tune.Tuner(trainable, param_space={"trial": tune.grid_search(trials)},
                           tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler,
                                                       max_concurrent_trials=cpu_slots(),
                                                       time_budget_s=time_budget_s, reuse_actors=True),
                           run_config=tune.RunConfig(storage_path=str(experiment.parent), name=name, verbose=0))
        grid = tuner.fit()
    results = []
    for result in grid:
        trial = result.config["trial"]
        frame = result.metrics_dataframe
        ran = frame is not None and len(frame) > 0
        error = str(result.error).strip().splitlines()[-1][:300] if result.error else ""
        results.append(TrialResult(trial["candidate"], float(trial["lam"]), int(frame["epoch"].max()) if ran else 0,
                                   float(frame[METRIC].max()) if ran else 0.0,
                                   float(frame["flops"].max()) if ran else 0.0, error,
                                   float(frame["gpu"].iloc[-1]) if ran else 0.0,
                                   str(frame["device"].iloc[-1]) if ran else "",
                                   str(frame["best_correct"].iloc[-1]) if ran and "best_correct" in frame else ""))
    return results
