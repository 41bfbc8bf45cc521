"""A Ray Train run's checkpoints on disk. A run trains one student, or a pack of small students one after the
other (`packs`): each checkpoint folder holds one state file per student begun so far, in the pack's order
(weights, optimiser, loop state), written by the worker of rank 0 and read back by the driver and by a resumed
run. No Ray needed to read them."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ray.train import Checkpoint

STATE_FILE = "student.pt"  # the first (or only) student's; the k-th of a pack's is student-k.pt


def state_file(member: int) -> str:
    return STATE_FILE if member == 0 else f"student-{member}.pt"


def load_state(path: Path) -> dict | None:
    """One student's training state, or None where its file is missing or half-written."""
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None


def load_states(folder: str | Path) -> list[dict] | None:
    """Every student's state in a checkpoint folder, in the pack's order; None where the folder is not whole
    (the first state missing, or any state half-written)."""
    states, member = [], 0
    while member == 0 or (Path(folder) / state_file(member)).exists():
        state = load_state(Path(folder) / state_file(member))
        if state is None:
            return None
        states.append(state)
        member += 1
    return states


def epochs_in(states: list[dict]) -> int:
    """How far a checkpoint got: the epochs of every student in it."""
    return sum(len(state["history"]) for state in states)


def resume_states(registered: "Checkpoint | None", on_disk: str | None) -> list[dict]:
    """The states to resume from (empty: start afresh): Ray Train's latest registered checkpoint, or the newest
    one on disk where that holds more epochs. Why both: a worker writes its checkpoint folder before the
    controller registers it, so a driver stopped in between leaves a whole epoch on disk that Ray Train does not
    know of; resuming from the registered one alone trained that epoch twice."""
    candidates = []
    if registered is not None:
        with registered.as_directory() as folder:
            candidates.append(load_states(folder))
    if on_disk:
        candidates.append(load_states(on_disk))
    return max((states for states in candidates if states is not None), key=epochs_in, default=[])


def newest_checkpoint(run_dir: Path) -> tuple[Path, list[dict]] | None:
    """The newest whole checkpoint folder of a run, with its states. Folders newer than it are debris of a write
    a stop cut short: they are removed, so they are never counted or read as epochs. Folder names are Ray
    Train's timestamps, so name order is time order."""
    folders = sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for folder in folders:
        states = load_states(folder)
        if states is not None:
            return folder, states
        shutil.rmtree(folder, ignore_errors=True)
    return None


def save_states(states: list[dict], folder: Path) -> None:
    for member, state in enumerate(states):
        torch.save(state, folder / state_file(member))
