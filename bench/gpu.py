"""The prepared GPU check: one command on a machine with a CUDA GPU, within 10 minutes.

    .venv/bin/python bench/gpu.py            # on a CUDA machine: (a) the cuda-marked tests, (b) the scan, (c) the OT step
    .venv/bin/python bench/gpu.py --quick    # the same steps on the CPU with tiny teachers, in under a minute

(a) runs `pytest -m cuda` where torch sees CUDA (elsewhere says it did not, and why).
(b) scans TEACHERS real-size teachers (random weights: timing only) at 224x224 on a PROBE-image probe and
    reports, per teacher, the seconds to load (read + build + move to the device), to copy the probe to the
    device and to run it, all in this process through the one forward path; then the scan's wall time (a cold
    `scan()`: Ray start excluded, runner start, checkpoint reads and scoring included) against the summed bare
    forward time, and its throughput against the limit
        sum over teachers of max(checkpoint bytes / measured read bandwidth, forward FLOPs / measured matmul rate)
    (read bandwidth: the checkpoints read once with their pages dropped first; matmul rate: a square bfloat16
    matmul on CUDA, float32 on the CPU). Goal on a GPU: the scan at >= 80% of that limit.
(c) times one distillation step (student forward + backward + optimiser) with the OT term against
    cross-entropy alone. Goal: OT step <= 1.3x CE.
Figures print as a table and as JSON (also written to OUT/gpu-bench.json).
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, synthetic_zoo  # noqa: E402

from selkd_ray.api import index_zoo, scan  # noqa: E402
from selkd_ray.config import DistillConfig, ScanConfig  # noqa: E402
from selkd_ray.demo.data import target_task  # noqa: E402
from selkd_ray.distributed.runtime import connect  # noqa: E402
from selkd_ray.models.forward import ForwardPath, choose_device, to_device  # noqa: E402
from selkd_ray.models.timm_models import WEIGHTS_FILE, build_model  # noqa: E402
from selkd_ray.scoring.probe import make_probe  # noqa: E402
from selkd_ray.training.loop import step_loss  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    architectures: tuple[str, ...] = ("resnet50", "convnext_tiny", "vit_small_patch16_224", "efficientnet_b0")
    teachers: int = 20
    input_size: tuple[int, int, int] = (3, 224, 224)
    probe_per_class: int = 100  # 10 classes: a 1,000-image probe
    student: str = "resnet18"
    student_input: tuple[int, int, int] = (3, 112, 112)
    teacher_classes: int = 1000  # the OT term's cost matrix: 1,000 teacher classes onto 10 target classes
    steps: int = 20


QUICK = Sizes(architectures=("test_resnet", "test_efficientnet", "test_vit"), teachers=3, input_size=(3, 64, 64),
              probe_per_class=5, student="test_efficientnet", student_input=(3, 32, 32), teacher_classes=100,
              steps=3)


def say(message: str) -> None:
    print(message, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def drop_pages(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages, so the next read comes from the disk."""
    with open(path, "rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_bandwidth(paths: list[Path]) -> float:
    """Bytes per second reading these files once, their cached pages dropped first."""
    for path in paths:
        drop_pages(path)
    started, total = time.perf_counter(), 0
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 24):
                total += len(block)
    return total / (time.perf_counter() - started)


def matmul_rate(device: torch.device, size: int) -> float:
    """FLOPs per second of a square matmul (bfloat16 on CUDA, float32 on the CPU), best of five."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


def bare_forward(specs, images: np.ndarray, device: torch.device) -> list[dict]:
    """Per teacher, in this process: seconds to load, to copy the probe to the device and to run it."""
    rows = []
    for spec in specs:
        drop_pages(Path(spec.path) / WEIGHTS_FILE)
        started = time.perf_counter()
        forward = ForwardPath.for_teacher(spec, device)
        synchronize(device)
        loaded = time.perf_counter()
        to_device(images, device)
        synchronize(device)
        copied = time.perf_counter()
        forward.outputs(images[:8])  # warm-up (kernels, autotuning), as a runner's first batch
        synchronize(device)
        warm = time.perf_counter()
        forward.outputs(images)
        synchronize(device)
        done = time.perf_counter()
        rows.append({"teacher": spec.teacher_id, "architecture": spec.architecture, "load_s": loaded - started,
                     "copy_s": copied - loaded, "run_s": done - warm, "flops": spec.flops_per_sample * len(images),
                     "bytes": (Path(spec.path) / WEIGHTS_FILE).stat().st_size})
        del forward
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def scan_figures(out: Path, sizes: Sizes, device: torch.device) -> dict:
    zoo = out / f"zoo-{'-'.join(map(str, sizes.input_size))}-{sizes.teachers}"
    synthetic_zoo(zoo, sizes.teachers, sizes.architectures, num_classes=1000, input_size=sizes.input_size)
    specs, _ = index_zoo(zoo)
    task = target_task(0, tuple(range(10)), {"train": sizes.probe_per_class, "val": 2, "test": 2})
    probe = make_probe(task, sizes.probe_per_class)
    rows = bare_forward(specs, probe.images, device)
    bandwidth = read_bandwidth([Path(spec.path) / WEIGHTS_FILE for spec in specs])
    rate = matmul_rate(device, 8192 if device.type == "cuda" else 1024)
    limit = sum(max(row["bytes"] / bandwidth, row["flops"] / rate) for row in rows)
    for spec in specs:
        drop_pages(Path(spec.path) / WEIGHTS_FILE)
    target = out / "scan"
    started = time.perf_counter()
    result = scan(zoo, task, target / datetime.datetime.now().strftime("%H%M%S"), ScanConfig(scorers=("leep",)))
    wall = time.perf_counter() - started
    assert result.ran == len(specs), [row.error for row in result.rows if row.error]
    bare = sum(row["run_s"] for row in rows)
    images = len(specs) * len(probe)
    return {"teachers": rows, "probe_images": len(probe), "read_bandwidth_bytes_s": bandwidth,
            "matmul_flops_s": rate, "limit_s": limit, "scan_wall_s": wall, "bare_forward_s": bare,
            "scan_over_bare": wall / bare, "throughput_images_s": images / wall,
            "limit_throughput_images_s": images / limit, "share_of_limit": limit / wall,
            "runners": list(result.runners)}


def step_figures(sizes: Sizes, device: torch.device) -> dict:
    """Seconds per distillation step, OT term against cross-entropy alone, same student and batches."""
    from selkd_ray.training.data import StudentData

    torch.manual_seed(0)
    student = build_model(sizes.student, 10, sizes.student_input[0]).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    x_lab = torch.randn(32, *sizes.student_input, device=device)
    y_lab = torch.randint(0, 10, (32,), device=device)
    x_all = torch.randn(64, *sizes.student_input, device=device)
    t_logits = torch.randn(64, sizes.teacher_classes, device=device)
    cost = torch.rand(sizes.teacher_classes, 10, device=device)
    data = StudentData(np.zeros((1, *sizes.student_input), np.uint8), np.zeros(1, int), None, None,
                       np.zeros((1, *sizes.student_input), np.uint8), np.zeros(1, int), 10, sizes.student_input,
                       (0.5,) * 3, (0.25,) * 3)
    seconds = {}
    for loss in ("ce", "ot", "ce", "ot"):  # interleaved, the second pass counts (the first warms up)
        config = DistillConfig(student=sizes.student, loss=loss)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(sizes.steps):
            value = step_loss(student, data, (x_lab, y_lab), (x_all, t_logits), config, cost)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
        synchronize(device)
        seconds[loss] = (time.perf_counter() - started) / sizes.steps
    return {"ce_step_s": seconds["ce"], "ot_step_s": seconds["ot"], "ot_over_ce": seconds["ot"] / seconds["ce"],
            "student": sizes.student, "input": list(sizes.student_input), "teacher_classes": sizes.teacher_classes}


def cuda_tests() -> dict:
    """The suite's `cuda` tests, run where torch sees CUDA; elsewhere not started (every one of them would skip,
    and a nested pytest costs half a minute to say so)."""
    if not torch.cuda.is_available():
        return {"exit_code": 0, "ran": False, "summary": "not run: torch sees no CUDA device here"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                           str(Path(__file__).resolve().parents[1] / "tests" / "test_cuda.py")],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " passed" in line or " skipped" in line or " failed" in line),
                   lines[-1] if lines else "")
    return {"exit_code": done.returncode, "ran": True, "summary": summary.strip("= ")}


def report(figures: dict) -> None:
    scan_part, step = figures["scan"], figures["step"]
    say(f"(a) cuda tests: {figures['tests']['summary']} (exit {figures['tests']['exit_code']})")
    say(f"(b) scan of {len(scan_part['teachers'])} teachers on a {scan_part['probe_images']}-image probe, device "
        f"{figures['device']}:")
    say(f"    {'teacher':<12} {'architecture':<24} {'load s':>7} {'copy s':>7} {'run s':>7}")
    for row in scan_part["teachers"]:
        say(f"    {row['teacher']:<12} {row['architecture']:<24} {row['load_s']:7.3f} {row['copy_s']:7.3f} "
            f"{row['run_s']:7.3f}")
    say(f"    scan wall {scan_part['scan_wall_s']:.1f} s against bare forward {scan_part['bare_forward_s']:.1f} s "
        f"({scan_part['scan_over_bare']:.2f}x); throughput {scan_part['throughput_images_s']:.0f} images/s against "
        f"a limit of {scan_part['limit_throughput_images_s']:.0f} (read {scan_part['read_bandwidth_bytes_s'] / 1e9:.2f}"
        f" GB/s, matmul {scan_part['matmul_flops_s'] / 1e12:.1f} TFLOP/s): {scan_part['share_of_limit']:.0%} of it")
    say(f"(c) distillation step ({step['student']} at {step['input']}): CE {step['ce_step_s'] * 1e3:.1f} ms, "
        f"OT {step['ot_step_s'] * 1e3:.1f} ms ({step['ot_over_ce']:.2f}x)")


def main(quick: bool = typer.Option(False, help="tiny teachers on the CPU: checks the script, not the figures"),
         out: Path = typer.Option(Path("bench-out/gpu"), help="output folder")) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu") if quick else choose_device().device
    if not quick and device.type != "cuda":
        raise typer.BadParameter("no CUDA device here: run with --quick on the CPU, or on a GPU machine")
    sizes = QUICK if quick else Sizes()
    started = time.perf_counter()
    figures = {"date": datetime.date.today().isoformat(), "machine": machine(), "quick": quick,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "tests": cuda_tests()}
    connect()
    figures["scan"] = scan_figures(out, sizes, device)
    figures["step"] = step_figures(sizes, device)
    figures["wall_s"] = time.perf_counter() - started
    (out / "gpu-bench.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    report(figures)
    say(json.dumps({k: v for k, v in figures.items() if k != "scan"} | {"scan": {
        k: v for k, v in figures["scan"].items() if k != "teachers"}}, indent=2, default=str))


if __name__ == "__main__":
    typer.run(main)
