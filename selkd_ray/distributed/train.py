"""The Ray Train job: the plain student loop, plus prepare_model / prepare_data_loader / report / checkpoints."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import ray
import ray.train
import torch
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_data_loader, prepare_model

from ..config import DistillConfig
from ..training import StudentData, evaluate, loaders, new_student, train_epoch

STATE_FILE = "student.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def train_func(job: dict) -> None:
    """Per-worker loop. `job` holds the DistillConfig as a dict and the StudentData's object ref."""
    config = DistillConfig(**job["config"])
    data: StudentData = ray.get(job["data_ref"])
    student, optimizer = new_student(data, config)
    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # resume where the last reported epoch ended
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
    student = prepare_model(student)
    device = next(unwrap(student).parameters()).device
    labelled_loader, all_loader = loaders(data, config, ray.train.get_context().get_world_rank())
    all_loader = prepare_data_loader(all_loader, move_to_device=False)
    for epoch in range(start_epoch, config.epochs):
        if hasattr(all_loader.sampler, "set_epoch"):
            all_loader.sampler.set_epoch(epoch)
        loss = train_epoch(student, optimizer, data, labelled_loader, all_loader, config, device)
        metrics = {"epoch": epoch, "loss": loss, "val_accuracy": evaluate(unwrap(student), data, data.val_images,
                                                                          data.val_labels, device)}
        history.append(metrics)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if ray.train.get_context().get_world_rank() == 0:
                torch.save({"model": unwrap(student).state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch, "history": history}, Path(folder) / STATE_FILE)
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)


def fit_student(data: StudentData, config: DistillConfig, storage_path: str, name: str,
                max_failures: int = 2) -> dict:
    """Run the TorchTrainer; return the final checkpoint's state (model weights and per-epoch history)."""
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"config": dataclasses.asdict(config), "data_ref": ray.put(data)},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(storage_path=storage_path, name=name,
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, weights_only=False, map_location="cpu")
    state["checkpoint_path"] = result.checkpoint.path
    return state

