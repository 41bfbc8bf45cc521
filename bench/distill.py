"""Distillation benchmarks: Ray Train overhead, OT-loss overhead, accuracy over seeds, a lambda/tau/eps sweep.

    .venv/bin/python bench/distill.py            # the full figures (about 10 minutes on 2 cores)
    .venv/bin/python bench/distill.py --quick    # the same steps, small, to check the script works

Figures (ratios measured side by side in one run):
- Ray Train overhead: one-worker Ray Train epoch time against the same loop in plain torch (one thread each);
- OT loss overhead: a training step with the Sinkhorn term against cross-entropy alone at batch 256,
  C_T = 100, C_S = 10;
- accuracy on the demo task over seeds: students from the top- and bottom-ranked teachers, label-only, and
  KL distillation from a teacher with the target's own label space;
- a one-at-a-time sweep of lambda, tau and eps around the defaults, with the top teacher.
"""
from __future__ import annotations

import datetime
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from common import student_accuracy_here  # noqa: E402
from selkd_ray.api import scan  # noqa: E402
from selkd_ray.config import DistillConfig, ScanConfig  # noqa: E402
from selkd_ray.demo.data import target_task  # noqa: E402
from selkd_ray.demo.zoo import RECIPES, TeacherRecipe, build_zoo, digits  # noqa: E402
from selkd_ray.training.student_data import student_data, teacher_spec  # noqa: E402
from selkd_ray.distributed.runtime import connect  # noqa: E402
from selkd_ray.distributed.fan_out import fan_out  # noqa: E402
from selkd_ray.distributed.train import fit_student  # noqa: E402
from selkd_ray.io.atomic import write_table  # noqa: E402
from selkd_ray.training.losses import sinkhorn_distillation_loss  # noqa: E402
from selkd_ray.models.timm_models import build_model  # noqa: E402
from selkd_ray.training.loop import fit_plain  # noqa: E402

SAME_LABELS = TeacherRecipe("digits-358", digits(3, 5, 8))  # the target's own label space: KL applies


@dataclass(frozen=True)
class Sizes:
    overhead_epochs: int = 8
    loss_steps: int = 20
    seeds: int = 3
    epochs: int = 30
    sweep_seeds: int = 2
    teachers: int = 0  # the demo zoo's first this many recipes (0: all 12)
    teacher_epochs: int = 4  # the demo zoo's


QUICK = Sizes(overhead_epochs=2, loss_steps=3, seeds=1, epochs=1, sweep_seeds=1, teachers=3, teacher_epochs=1)


def say(message: str) -> None:
    print(message, flush=True)


def ray_train_overhead(task, teacher, sizes: Sizes, out: Path) -> dict:
    """Median training-pass time per epoch: Ray Train (1 worker, 1 CPU) against fit_plain at one thread."""
    config = DistillConfig(epochs=sizes.overhead_epochs)
    data = student_data(task, teacher_spec(teacher), config, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    plain = fit_plain(data, config)
    plain_total = time.perf_counter() - started
    torch.set_num_threads(threads)
    started = time.perf_counter()
    ray_state = fit_student(data, config, str(out / "runs"), f"overhead-{time.time_ns()}")
    ray_total = time.perf_counter() - started
    skip = 1 if sizes.overhead_epochs > 2 else 0  # the first epoch pays one-off warm-up on both sides
    plain_epoch = statistics.median(r["seconds"] for r in plain.history[skip:])
    ray_epoch = statistics.median(r["seconds"] for r in ray_state.history[skip:])
    figures = {"epochs": sizes.overhead_epochs, "plain_epoch_s": plain_epoch, "ray_train_epoch_s": ray_epoch,
               "epoch_ratio": ray_epoch / plain_epoch, "plain_run_s": plain_total, "ray_train_run_s": ray_total,
               "run_ratio": ray_total / plain_total}
    say(f"Ray Train overhead: epoch {ray_epoch:.2f} s vs plain {plain_epoch:.2f} s = {figures['epoch_ratio']:.2f}x; "
        f"whole run {ray_total:.1f} s vs {plain_total:.1f} s = {figures['run_ratio']:.2f}x (start-up included)")
    return figures


def ot_loss_overhead(sizes: Sizes, batch: int = 256, teacher_classes: int = 100, student_classes: int = 10) -> dict:
    """Median step time, CE + Sinkhorn against CE alone, interleaved, one thread, test_efficientnet student."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    student = build_model("test_efficientnet", student_classes, 1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, student_classes, (batch,))
    teacher_logits = torch.randn(batch, teacher_classes) * 3
    cost = torch.rand(teacher_classes, student_classes)

    def step(with_ot: bool) -> float:
        started = time.perf_counter()
        logits = student(x)
        loss = F.cross_entropy(logits, y)
        if with_ot:
            loss = loss + sinkhorn_distillation_loss(teacher_logits, logits, cost, tau=2.0, eps=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    step(True), step(False)  # warm-up
    ce, ot_steps = [], []
    for _ in range(sizes.loss_steps):
        ce.append(step(False))
        ot_steps.append(step(True))
    torch.set_num_threads(threads)
    figures = {"batch": batch, "teacher_classes": teacher_classes, "student_classes": student_classes,
               "ce_step_s": statistics.median(ce), "ot_step_s": statistics.median(ot_steps)}
    figures["ratio"] = figures["ot_step_s"] / figures["ce_step_s"]
    say(f"OT loss overhead (B {batch}, C_T {teacher_classes}, C_S {student_classes}): step {figures['ot_step_s'] * 1e3:.0f} ms"
        f" vs CE alone {figures['ce_step_s'] * 1e3:.0f} ms = {figures['ratio']:.2f}x")
    return figures


def students(task, calls: list[tuple[str, str | None, DistillConfig]]) -> list[dict]:
    """Train (label, teacher, config) students as parallel Ray tasks; rows with test accuracy."""
    rows = []
    jobs = [("@task", teacher, config) for _, teacher, config in calls]
    for index, result in fan_out(student_accuracy_here, jobs, shared={"task": task}):
        label, teacher, config = calls[index]
        rows.append({"label": label, "teacher": Path(teacher).name if teacher else "", "seed": config.seed,
                     "loss": config.loss if teacher else "ce", "lam": config.lam, "tau": config.tau, "eps": config.eps,
                     "test_accuracy": result["test_accuracy"]})
        say(f"  {label} seed {config.seed}: {result['test_accuracy']:.3f}")
    return rows


def summarise(rows: list[dict], key: str) -> dict:
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row["test_accuracy"])
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
            for name, v in groups.items()}


def run(out: Path, sizes: Sizes, zoo: Path | None = None, same_labels: Path | None = None, runners=None) -> dict:
    """The benchmark; `zoo` and `same_labels` (a teacher of the target's own three classes): trained teachers
    to use instead of training the demo zoo's (the test suite passes its tiny zoo's); `runners`: a running
    RunnerPool for the scan (else it starts its own)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    connect()
    started = time.perf_counter()
    if zoo is None:
        zoo = out / ("zoo" if not sizes.teachers else f"zoo-{sizes.teachers}")
        build_zoo(zoo, say, recipes=RECIPES[:sizes.teachers] if sizes.teachers else RECIPES,
                  epochs=sizes.teacher_epochs)
    if same_labels is None:
        build_zoo(out / "same-labels", say, recipes=(SAME_LABELS,), epochs=sizes.teacher_epochs)
        same_labels = out / "same-labels" / SAME_LABELS.teacher_id
    task = target_task()
    ranking = scan(zoo, task, out / "scan", ScanConfig(probe_per_class=20), runners=runners).ranked
    top, bottom = ranking[0].path, ranking[-1].path
    say(f"scan ({ScanConfig.scorers[0]}): top {ranking[0].teacher_id}, bottom {ranking[-1].teacher_id}")
    figures = {"date": datetime.date.today().isoformat(), "machine": machine(),
               "ray_train_overhead": ray_train_overhead(task, top, sizes, out), "ot_loss_overhead": ot_loss_overhead(sizes)}
    base = DistillConfig(epochs=sizes.epochs)
    calls = []
    for seed in range(sizes.seeds):
        config = replace(base, seed=seed)
        calls += [(f"top ({Path(top).name})", top, config), (f"bottom ({Path(bottom).name})", bottom, config),
                  ("labels only", None, config),
                  (f"KL from {same_labels.name}", str(same_labels), replace(config, loss="kl")),
                  (f"OT from {same_labels.name}", str(same_labels), config)]
    say(f"accuracy over {sizes.seeds} seeds, {sizes.epochs} epochs:")
    accuracy_rows = students(task, calls)
    figures["accuracy"] = summarise(accuracy_rows, "label")
    sweep_calls = []
    for seed in range(sizes.sweep_seeds):
        config = replace(base, seed=seed)
        for name, values in (("lam", (0.3, 1.0, 3.0)), ("tau", (1.0, 2.0, 4.0)), ("eps", (0.02, 0.05, 0.2))):
            for value in values:
                if value == getattr(base, name) and name != "lam":
                    continue  # the default point is run once, under lam
                sweep_calls.append((f"{name}={value}" if value != getattr(base, name) else "defaults", top,
                                    replace(config, **{name: value})))
    say(f"sweep around lambda {base.lam}, tau {base.tau}, eps {base.eps} ({sizes.sweep_seeds} seeds):")
    sweep_rows = students(task, sweep_calls)
    figures["sweep"] = summarise(sweep_rows, "label")
    write_table(pa.Table.from_pylist(accuracy_rows + [{**r, "label": f"sweep {r['label']}"} for r in sweep_rows]),
                out / "distill-students.parquet")
    figures["wall_s"] = time.perf_counter() - started
    (out / "distill-bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    say(json.dumps(figures, indent=2))
    return figures


def main(quick: bool = typer.Option(False, help="small: checks the script, not the figures"),
         out: Path = typer.Option(Path("bench-out/distill"), help="output folder")) -> None:
    run(out, QUICK if quick else Sizes())


if __name__ == "__main__":
    typer.run(main)
