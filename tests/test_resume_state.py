"""Resuming a Ray Train run from what is on disk: a checkpoint folder written but never registered (the driver
stopped in between) is an epoch done, and a half-written folder is debris. No Ray needed."""
import torch
from ray.train import Checkpoint

from selkd_ray.distributed.train import STATE_FILE, newest_checkpoint, resume_state


def write(folder, epochs: int):
    folder.mkdir(parents=True)
    torch.save({"history": [{"epoch": e} for e in range(epochs)], "model": {}, "optimizer": {}}, folder / STATE_FILE)
    return folder


def test_the_newest_whole_checkpoint_wins_and_debris_is_removed(tmp_path):
    write(tmp_path / "checkpoint_2026-12-02_10-00-00.000", 1)
    whole = write(tmp_path / "checkpoint_2026-12-02_10-00-05.000", 2)
    cut = tmp_path / "checkpoint_2026-12-02_10-00-09.000"
    cut.mkdir()
    (cut / STATE_FILE).write_bytes(b"PK\x03\x04 half a zip")
    folder, state = newest_checkpoint(tmp_path)
    assert folder == whole and len(state["history"]) == 2
    assert not cut.exists()  # never counted or read as an epoch again
    assert newest_checkpoint(tmp_path / "none") is None


def test_an_unregistered_checkpoint_with_more_epochs_is_resumed_from(tmp_path):
    registered = Checkpoint.from_directory(str(write(tmp_path / "checkpoint_a", 2)))
    unregistered = write(tmp_path / "checkpoint_b", 3)
    assert len(resume_state(registered, str(unregistered))["history"]) == 3
    assert len(resume_state(registered, None)["history"]) == 2  # what Ray Train alone would resume from
    assert len(resume_state(None, str(unregistered))["history"]) == 3
    assert resume_state(None, None) is None
