"""Resuming a Ray Train run from what is on disk: a checkpoint folder written but never registered (the driver
stopped in between) is an epoch done, and a half-written folder is debris; a run that trains a pack of students
resumes from the checkpoint with the most epochs of them all. No Ray needed."""
import torch
from ray.train import Checkpoint

from selkd_ray.distributed.checkpoints import STATE_FILE, newest_checkpoint, resume_states, state_file


def write(folder, *epochs: int):
    """A checkpoint folder with one state per student, each `epochs[k]` epochs in."""
    folder.mkdir(parents=True)
    for member, count in enumerate(epochs):
        torch.save({"history": [{"epoch": e} for e in range(count)], "model": {}, "optimizer": {}},
                   folder / state_file(member))
    return folder


def resume_state(registered, on_disk):
    """The single student's state to resume from, or None."""
    states = resume_states(registered, on_disk)
    assert len(states) <= 1
    return states[0] if states else None


def test_the_newest_whole_checkpoint_wins_and_debris_is_removed(tmp_path):
    write(tmp_path / "checkpoint_2026-12-02_10-00-00.000", 1)
    whole = write(tmp_path / "checkpoint_2026-12-02_10-00-05.000", 2)
    cut = tmp_path / "checkpoint_2026-12-02_10-00-09.000"
    cut.mkdir()
    (cut / STATE_FILE).write_bytes(b"PK\x03\x04 half a zip")
    folder, (state,) = newest_checkpoint(tmp_path)
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


def test_a_pack_resumes_from_the_checkpoint_with_most_epochs_of_all_its_students(tmp_path):
    """Two students trained one after the other in one run: the first finished (3 epochs), the second one epoch
    in. A later checkpoint whose second state is half-written is debris; the whole one before it is resumed."""
    first_done = write(tmp_path / "checkpoint_2026-12-02_10-00-00.000", 3)
    both = write(tmp_path / "checkpoint_2026-12-02_10-00-05.000", 3, 1)
    cut = write(tmp_path / "checkpoint_2026-12-02_10-00-09.000", 3)
    (cut / state_file(1)).write_bytes(b"PK\x03\x04 half a zip")
    folder, states = newest_checkpoint(tmp_path)
    assert folder == both and [len(s["history"]) for s in states] == [3, 1] and not cut.exists()
    registered = Checkpoint.from_directory(str(first_done))
    assert [len(s["history"]) for s in resume_states(registered, str(both))] == [3, 1]
    assert [len(s["history"]) for s in resume_states(registered, None)] == [3]
