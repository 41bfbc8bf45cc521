"""Scan benchmarks: efficiency against bare forward passes, the halving budget, incremental rescans, driver memory.

    .venv/bin/python bench/scan.py             # the full figures (about 15 minutes on 2 cores)
    .venv/bin/python bench/scan.py --quick     # the same steps on small zoos, to check the script works

Every ratio is measured side by side in one run. Figures:
- efficiency: wall time of a scan of N teachers (one actor, then two) against the sum of the same teachers'
  bare forward passes on the probe in this process (weights already loaded, one thread);
- budget: over S seeds (probe samples), how often successive halving returns the full scan's top-1 teacher,
  and the fraction of the full scan's FLOPs it spends;
- incremental: a rescan of a zoo of C cached + 10 new teachers against a scan of the 10 new alone;
- scale: the driver's peak resident memory scanning zoos of 50, 200 and 1000 tiny teachers;
- scorers: every teacher scorer's seconds against the bare forward pass it scores (15 and 500 probe images,
  512- and 2048-d features): `--section scorers` measures it alone.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import linked_zoo, machine, stopwatch, synthetic_zoo  # noqa: E402

from selkd_ray.api import index_zoo, scan  # noqa: E402
from selkd_ray.config import ScanConfig  # noqa: E402
from selkd_ray.demo.data import target_task  # noqa: E402
from selkd_ray.demo.zoo import MORE_RECIPES, RECIPES, train_teacher  # noqa: E402
from selkd_ray.distributed.runtime import connect  # noqa: E402
from selkd_ray.distributed.fan_out import fan_out  # noqa: E402
from selkd_ray.io.atomic import write_table  # noqa: E402
from selkd_ray.models.forward import ForwardPath  # noqa: E402
from selkd_ray.models.timm_models import WEIGHTS_FILE, load_teacher, save_teacher  # noqa: E402
from selkd_ray.scoring.probe import make_probe  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    efficiency_teachers: int = 50
    efficiency_per_class: int = 20  # 10 classes: the default 200-image probe
    budget_seeds: int = 20
    budget_variants: int = 2  # noisy copies of each trained teacher (23 trained -> 69 teachers)
    budget_per_class: int = 50
    incremental_cached: int = 200
    scale: tuple[int, ...] = (50, 200, 1000)


# Teachers with some compute, taking 96x96 RGB like real ones (the grey 28x28 digits are converted and resized,
# inside the timed forward): at 28x28 the test_* models run a probe in milliseconds, and a scan of them
# measures Ray's fixed costs rather than the scan's efficiency.
EFFICIENCY_ARCHITECTURES = ("resnet10t", "mobilenetv3_small_050", "test_resnet")
EFFICIENCY_INPUT = (3, 96, 96)
QUICK = Sizes(efficiency_teachers=6, efficiency_per_class=20, budget_seeds=2, budget_variants=1, budget_per_class=10,
              incremental_cached=12, scale=(5, 10))


def say(message: str) -> None:
    print(message, flush=True)


def efficiency(out: Path, sizes: Sizes) -> dict:
    """Scan wall time against the summed bare forward time of the same teachers: cold (the scan starts its
    runner actors) and warm (runners already started, as in a driver that scans many tasks)."""
    from selkd_ray.distributed.runners import RunnerPool

    zoo = out / "zoo-efficiency-rgb96"
    synthetic_zoo(zoo, sizes.efficiency_teachers, EFFICIENCY_ARCHITECTURES, input_size=EFFICIENCY_INPUT)
    task = target_task(0, tuple(range(10)), {"train": sizes.efficiency_per_class, "val": 2, "test": 2})
    specs, _ = index_zoo(zoo)  # the zoo indexed once, as `selkd zoo index` leaves it
    probe = make_probe(task, sizes.efficiency_per_class)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bare = 0.0
    for spec in specs:
        forward = ForwardPath.for_teacher(spec, torch.device("cpu"))
        forward.outputs(probe.images[:8])  # warm-up, as the actor's first call
        started = time.perf_counter()
        forward.outputs(probe.images)
        bare += time.perf_counter() - started
    torch.set_num_threads(threads)
    walls = {}
    runs = (("cold_one_actor", 1, ScanConfig.scorers, False), ("warm_one_actor", 1, ScanConfig.scorers, True),
            ("warm_two_actors", 2, ScanConfig.scorers, True),
            ("warm_one_actor_ranking_scorer_only", 1, ScanConfig.scorers[:1], True))
    for label, actors, scorers, warm in runs:
        target = out / f"scan-efficiency-{label}"
        shutil.rmtree(target, ignore_errors=True)
        pool = RunnerPool(actors).ready() if warm else None
        try:
            with stopwatch(walls, label):
                result = scan(zoo, task, target, ScanConfig(scorers=scorers, probe_per_class=sizes.efficiency_per_class,
                                                            max_actors=actors), runners=pool)
        finally:
            if pool is not None:
                pool.close()
        assert result.ran == len(specs)
    figures = {"teachers": len(specs), "probe_images": len(probe), "input": list(EFFICIENCY_INPUT),
               "bare_forward_s": bare, **{f"scan_{k}_s": v for k, v in walls.items()},
               **{f"ratio_{k}": v / bare for k, v in walls.items()},
               "speedup_two_actors_warm": walls["warm_one_actor"] / walls["warm_two_actors"]}
    say(f"efficiency: {len(specs)} teachers, {len(probe)}-image probe at {EFFICIENCY_INPUT}: bare forward "
        f"{bare:.1f} s; one actor cold {walls['cold_one_actor']:.1f} s ({figures['ratio_cold_one_actor']:.2f}x), "
        f"warm {walls['warm_one_actor']:.1f} s ({figures['ratio_warm_one_actor']:.2f}x; "
        f"{figures['ratio_warm_one_actor_ranking_scorer_only']:.2f}x scoring with {ScanConfig.scorers[0]} only); "
        f"two actors warm {walls['warm_two_actors']:.1f} s (speed-up {figures['speedup_two_actors_warm']:.2f}x)")
    return figures


def noisy_copy(source: Path, target: Path, scale: float, seed: int) -> None:
    """A teacher 'fine-tuned into something worse': its weights plus Gaussian noise of `scale` x each tensor's std."""
    from selkd_ray.training.student_data import teacher_spec

    spec = teacher_spec(source)
    model = load_teacher(spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() > 1:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * tensor.std() * scale)
    save_teacher(model, target, spec.label_names, spec.input_size, spec.mean, spec.std)


def budget_zoo(zoo: Path, sizes: Sizes) -> list[Path]:
    recipes = RECIPES + MORE_RECIPES
    calls = [(r, i, str(zoo / r.teacher_id), 1) for i, r in enumerate(recipes)
             if not (zoo / r.teacher_id / WEIGHTS_FILE).is_file()]
    for _ in fan_out(train_teacher, calls):
        pass
    for index, recipe in enumerate(recipes):
        for variant in range(sizes.budget_variants):
            target = zoo / f"{recipe.teacher_id}-noisy{variant}"
            if not (target / WEIGHTS_FILE).is_file():
                noisy_copy(zoo / recipe.teacher_id, target, scale=0.3 * (variant + 1), seed=index * 10 + variant)
    return sorted(p for p in zoo.iterdir() if p.is_dir())


def budget(out: Path, sizes: Sizes) -> dict:
    """Full scans against halving scans (eta 3, min probe 2) over seeds: top-1 agreement and FLOPs fraction."""
    zoo = out / "zoo-budget"
    teachers = budget_zoo(zoo, sizes)
    task = target_task(0, (3, 5, 8), {"train": sizes.budget_per_class, "val": 5, "test": 5})
    rows = []
    for seed in range(sizes.budget_seeds):
        full = scan(zoo, task, out / "budget" / f"full-{seed}", ScanConfig(scorers=("ot",), seed=seed,
                                                                           probe_per_class=sizes.budget_per_class))
        halving = scan(zoo, task, out / "budget" / f"halving-{seed}",
                       ScanConfig(scorers=("ot",), seed=seed, probe_per_class=sizes.budget_per_class, eta=3,
                                  min_probe=2))
        rows.append({"seed": seed, "full_top1": full.ranked[0].teacher_id,
                     "halving_top1": halving.ranked[0].teacher_id, "full_flops": full.flops,
                     "halving_flops": halving.flops})
        rows[-1]["same_top1"] = rows[-1]["full_top1"] == rows[-1]["halving_top1"]
        rows[-1]["flops_fraction"] = halving.flops / full.flops
        say(f"budget seed {seed}: full top-1 {rows[-1]['full_top1']}, halving {rows[-1]['halving_top1']}, "
            f"{rows[-1]['flops_fraction']:.1%} of the FLOPs")
    write_table(pa.Table.from_pylist(rows), out / "budget.parquet")
    figures = {"teachers": len(teachers), "seeds": len(rows), "same_top1_rate": float(np.mean([r["same_top1"] for r in rows])),
               "flops_fraction_mean": float(np.mean([r["flops_fraction"] for r in rows])),
               "flops_fraction_max": float(np.max([r["flops_fraction"] for r in rows]))}
    say(f"budget: {len(teachers)} teachers, {len(rows)} seeds: halving returns the full scan's top-1 in "
        f"{figures['same_top1_rate']:.0%} of seeds at {figures['flops_fraction_mean']:.1%} of its FLOPs (max "
        f"{figures['flops_fraction_max']:.1%})")
    return figures


def incremental(out: Path, sizes: Sizes, all_tiny: list[Path]) -> dict:
    """Rescan of C cached + 10 new teachers against a scan of the 10 new alone (both with fresh actors)."""
    cached_count = sizes.incremental_cached
    old, new = all_tiny[:cached_count], all_tiny[cached_count:cached_count + 10]
    task = target_task()
    grown = out / "zoo-incremental"
    shutil.rmtree(grown, ignore_errors=True)
    shutil.rmtree(out / "scan-incremental", ignore_errors=True)
    shutil.rmtree(out / "scan-new-only", ignore_errors=True)
    linked_zoo(grown, old)
    scan(grown, task, out / "scan-incremental", ScanConfig())
    linked_zoo(grown, new)
    times = {}
    with stopwatch(times, "rescan"):
        again = scan(grown, task, out / "scan-incremental", ScanConfig())
    with stopwatch(times, "new_only"):
        alone = scan(linked_zoo(out / "zoo-new-only", new), task, out / "scan-new-only", ScanConfig())
    assert (again.ran, again.cached, alone.ran) == (10, cached_count, 10)
    figures = {"cached": cached_count, "new": 10, "rescan_s": times["rescan"], "new_only_s": times["new_only"],
               "ratio": times["rescan"] / times["new_only"]}
    say(f"incremental: rescan of {cached_count} cached + 10 new {times['rescan']:.2f} s, the 10 new alone "
        f"{times['new_only']:.2f} s: {figures['ratio']:.2f}x")
    return figures


DRIVER = """
import resource, sys, json
from selkd_ray.api import scan
from selkd_ray.config import ScanConfig
from selkd_ray.demo.data import target_task
result = scan(sys.argv[1], target_task(), sys.argv[2], ScanConfig())
print(json.dumps({"ran": result.ran, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scale(out: Path, sizes: Sizes, all_tiny: list[Path]) -> dict:
    """Peak RSS of a fresh driver process scanning zoos of growing size (joining the running Ray)."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    peaks = {}
    for count in sizes.scale:
        zoo = linked_zoo(out / f"zoo-scale-{count}", all_tiny[:count])
        target = out / f"scan-scale-{count}"
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run([sys.executable, "-c", DRIVER, str(zoo), str(target)], capture_output=True, text=True,
                              env=env, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        report = json.loads(done.stdout.strip().splitlines()[-1])
        peaks[count] = report["peak_rss_mb"]
        say(f"scale: {count} teachers, driver peak RSS {report['peak_rss_mb']:.0f} MiB")
    smallest, largest = min(sizes.scale), max(sizes.scale)
    return {"peak_rss_mb": peaks, "growth": peaks[largest] / peaks[smallest]}


# Teachers whose feature widths the scorers' cost depends on: resnet18's 512-d and resnet50's 2048-d pooled
# features (random weights: a scorer's time depends on the shapes, not the values; no ImageNet weights ship
# for them here), run bare on a 224x224 RGB probe.
SCORER_TEACHERS = (("resnet18", 512), ("resnet50", 2048))
SCORER_PROBES, QUICK_SCORER_PROBES = (15, 500), (15,)
SCORER_TARGET_CLASSES = 3


def scorers(out: Path, sizes: Sizes) -> dict:
    """Every registered teacher scorer's seconds on one teacher's probe evidence against that teacher's bare
    forward pass over the same probe in this process (one thread, weights loaded, batches of 32), at each
    probe size and feature width: a scorer should cost a small share of the forward pass it scores (issue 28:
    at most 10%). The task scorers (aggregate, learned) rank from these scores and are not timed here."""
    import timm
    from threadpoolctl import threadpool_limits

    from selkd_ray.scoring import SCORERS
    from selkd_ray.scoring.registry import TASK
    from selkd_ray.records import Evidence

    torch.set_num_threads(1)
    probes = QUICK_SCORER_PROBES if sizes == QUICK else SCORER_PROBES
    names = [name for name in SCORERS.names() if name not in SCORERS.tagged(TASK)]
    rows, rng = [], np.random.default_rng(0)
    for architecture, width in SCORER_TEACHERS:
        model = timm.create_model(architecture, pretrained=False, num_classes=10).eval()
        for images in probes:
            probe = torch.randn(images, 3, 224, 224, generator=torch.Generator().manual_seed(images))
            timed: dict = {}
            with torch.inference_mode(), stopwatch(timed, "forward"):
                pooled = torch.cat([model.forward_head(model.forward_features(batch), pre_logits=True)
                                    for batch in probe.split(32)])
                logits = model.get_classifier()(pooled)
            features = pooled.numpy().astype(np.float32)
            probs = torch.softmax(logits, 1).numpy()
            labels = np.arange(images) % SCORER_TARGET_CLASSES
            embed = lambda count: rng.normal(size=(count, 16)) / 4.0  # noqa: E731 - unit-ish label embeddings
            evidence = Evidence(probs, features, labels, SCORER_TARGET_CLASSES,
                                model.get_classifier().weight.detach().numpy(), embed(10),
                                embed(SCORER_TARGET_CLASSES), 11_000_000, 1_800_000_000)
            for name in names:
                with threadpool_limits(1), stopwatch(timed, name):  # one BLAS thread, as in a num_cpus=1 runner
                    SCORERS.get(name)(evidence)
                rows.append({"teacher": architecture, "width": width, "probe": images, "scorer": name,
                             "seconds": timed[name], "forward_seconds": timed["forward"],
                             "share": timed[name] / timed["forward"]})
                say(f"scorers: {architecture} ({width}-d), {images} images: {name} {timed[name]:.4f} s, "
                    f"{rows[-1]['share']:.1%} of the forward pass ({timed['forward']:.2f} s)")
    torch.set_num_threads(os.cpu_count() or 1)
    write_table(pa.Table.from_pylist(rows), out / "scorers.parquet")
    say(scorer_table(rows))
    worst = max(rows, key=lambda r: r["share"])
    return {"rows": rows, "worst": {k: worst[k] for k in ("scorer", "teacher", "probe", "share")},
            "over_10_percent": sorted({r["scorer"] for r in rows if r["share"] > 0.10})}


def scorer_table(rows: list[dict]) -> str:
    """Each scorer's share of the forward pass it scores, one column per (teacher, probe size)."""
    columns = sorted({(r["teacher"], r["width"], r["probe"]) for r in rows}, key=lambda c: (c[1], c[2]))
    share = {(r["scorer"], r["teacher"], r["probe"]): r["share"] for r in rows}
    forward = {(r["teacher"], r["probe"]): r["forward_seconds"] for r in rows}
    heads = [f"{w}-d, {n} img" for _, w, n in columns]
    lines = [f"{'scorer':<13}" + "".join(f"{h:>16}" for h in heads),
             f"{'forward pass':<13}" + "".join(f"{forward[(t, n)]:>15.2f}s" for t, _, n in columns)]
    for name in sorted({r["scorer"] for r in rows}):
        lines.append(f"{name:<13}" + "".join(f"{share[(name, t, n)]:>16.2%}" for t, _, n in columns))
    return "\n".join(lines)


SECTIONS = ("efficiency", "budget", "incremental", "scale", "scorers")


def run(out: Path, sizes: Sizes, sections: tuple[str, ...] = SECTIONS) -> dict:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    connect()
    started = time.perf_counter()
    all_tiny = lambda: synthetic_zoo(out / "tiny", max(sizes.scale + (sizes.incremental_cached + 10,)))  # noqa: E731
    runs = {"efficiency": lambda: efficiency(out, sizes), "budget": lambda: budget(out, sizes),
            "incremental": lambda: incremental(out, sizes, all_tiny()), "scale": lambda: scale(out, sizes, all_tiny()),
            "scorers": lambda: scorers(out, sizes)}
    report = out / "scan-bench.json"
    figures = json.loads(report.read_text()) if report.is_file() else {}  # sections not rerun keep their figures
    for name in sections:
        figures[name] = {**runs[name](), "date": datetime.date.today().isoformat(), "machine": machine()}
    figures["wall_s_last_run"] = time.perf_counter() - started
    report.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    say(json.dumps(figures, indent=2, default=str))
    return figures


def main(quick: bool = typer.Option(False, help="small zoos: checks the script, not the figures"),
         out: Path = typer.Option(Path("bench-out/scan"), help="output folder"),
         section: list[str] = typer.Option(list(SECTIONS), help="which figures to (re)measure (repeatable)")) -> None:
    unknown = set(section) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(f"unknown section(s) {sorted(unknown)}; expected some of {SECTIONS}")
    run(out, QUICK if quick else Sizes(), tuple(section))


if __name__ == "__main__":
    typer.run(main)
