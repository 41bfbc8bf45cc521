"""Ray Train distillation: a few real steps, a checkpoint, a student folder that joins the zoo."""
import numpy as np

from selkd_ray.api import distill, index_zoo
from selkd_ray.config import DistillConfig


def test_distillation_reports_a_checkpoint_and_saves_a_teacher_folder(ray_session, tiny_zoo, target_task, tmp_path):
    config = DistillConfig(epochs=2, seed=0)
    result = distill(target_task, tiny_zoo / "own-classes", tmp_path, config, name="student")
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert all(np.isfinite(row["loss"]) for row in result.history)
    assert 0.0 <= result.test_accuracy <= 1.0
    checkpoints = [c for c in (tmp_path / "runs").glob("*/checkpoint_*") if c.is_dir()]
    assert len(checkpoints) == 2 and all((c / "student.pt").is_file() for c in checkpoints)
    assert (result.student_dir / "model.safetensors").is_file()
    specs, _ = index_zoo(tmp_path, tmp_path / "catalogue.parquet")
    student = next(s for s in specs if s.teacher_id == "student")
    assert student.label_names == target_task.label_names and not student.error


def test_label_only_student_needs_no_teacher(ray_session, target_task, tmp_path):
    result = distill(target_task, None, tmp_path, DistillConfig(epochs=1), name="labels")
    assert result.teacher == "" and len(result.history) == 1
