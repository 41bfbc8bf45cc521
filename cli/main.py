"""`selkd`: thin commands over the selkd_ray API. Each parses options, builds a config, calls one function, prints."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from selkd_ray.collector import lean_collector
from selkd_ray.config import ScanConfig

from .documents import distill_json, scan_json, select_json
from .experience import experience_app
from .running import Display, distill_inputs, everywhere, one_line_errors

EPILOG = "Exit codes: 0 success; 1 `zoo index` found invalid teachers; 2 bad input (one line on stderr naming the file or field and what was expected)."
app = typer.Typer(help="Selective cross-task distillation over a model zoo, on Ray.", no_args_is_help=True, epilog=EPILOG,
                  pretty_exceptions_enable=False, add_completion=False)
zoo_app = typer.Typer(help="Manage a teacher zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(experience_app, name="experience")

app.callback()(everywhere)
lean_collector()  # the command's process imports torch, timm and POT (selkd_ray/collector.py)

ADDRESS = typer.Option(None, "--address", help="Ray cluster address (host:port); default: $RAY_ADDRESS, else a local Ray.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or log lines; only the result (and errors).")
GPUS = typer.Option(0, "--gpus", help="Train on this many GPUs (one Ray Train worker each); 0: CPU workers.")
REFIT = typer.Option(False, help="Train on the train and validation labels, keeping the last epoch of a cosine schedule (a selection's final recipe: no validation accuracy to report).")
PER_IMAGE = typer.Option(False, "--per-image-weights", help="Several teachers: weigh each image's teachers also by their confidence on it, their prediction carried onto the task's labels (1 - entropy / log classes).")
COVER = typer.Option(True, "--cover/--no-cover", help="Without --mixture: when no shortlisted teacher knows every class of the task (by its outputs on the labelled images), race the fewest that together do as one mixture.")
STUDENT_SIZE = typer.Option("auto", help="Student input HxW (64 or 64x48); auto: the task's own size when its images share one, else the student architecture's; model: always the architecture's.")
JSON = typer.Option(False, "--json", help="Print the result as one JSON document on stdout (implies --quiet).")
EXPERIENCE = typer.Option(None, "--experience", help="The experience table (folder or filesystem URI, a team's shared one): what the `learned` scorer fits on and where a select appends its race's outcomes; default OUT/experience.")


@app.command()
@one_line_errors
def demo(out: Path = typer.Option(Path("selkd-output/demo"), help="Where the zoo, task, scan and students go."),
         epochs: int = typer.Option(30, help="Student training epochs."),
         seed: int = typer.Option(0, help="Student seed."),
         teacher_epochs: int = typer.Option(4, min=1, help="Epochs of each zoo teacher (a zoo in OUT is reused)."),
         quiet: bool = QUIET, address: Optional[str] = ADDRESS) -> None:
    """Build a real demo zoo (MNIST teachers), scan it for a held-out digit task, distil three students.

    Example: selkd demo --out selkd-output/demo
    """
    from selkd_ray.config import DistillConfig
    from selkd_ray.demo.run import run_demo

    with Display(quiet) as progress:
        result = run_demo(out, DistillConfig(epochs=epochs, seed=seed), address, progress, teacher_epochs)
    typer.echo(result.summary)


@zoo_app.command("index")
@one_line_errors
def zoo_index(zoo_dir: Path = typer.Argument(..., help="Zoo folder: teacher folders at any depth (timm or transformers: config.json + model.safetensors or pytorch_model.bin) or a Hugging Face cache."),
              out: Optional[Path] = typer.Option(None, help="Catalogue path (default ZOO_DIR/catalogue.parquet)."),
              json_output: bool = JSON, quiet: bool = QUIET, address: Optional[str] = ADDRESS) -> None:
    """Index a zoo into a Parquet catalogue; only new or changed teachers are read (on Ray Data across the
    cluster when there are many, or with --address).

    Example: selkd zoo index ./zoo
    """
    from selkd_ray.api import index_zoo

    with Display(quiet or json_output) as progress:
        specs, path = index_zoo(zoo_dir, out, address, progress)
    bad = [s for s in specs if s.error]
    if json_output:
        progress.result(json.dumps({"catalogue": str(path), "teachers": [s.teacher_id for s in specs if not s.error],
                               "invalid": {s.teacher_id: s.error for s in bad},
                           "warnings": {s.teacher_id: s.warning for s in specs if s.warning}}))
        raise typer.Exit(1 if bad else 0)
    progress.result(f"catalogue {path}: {len(specs) - len(bad)} teachers indexed, {len(bad)} invalid")
    for spec in specs:
        if spec.warning:
            typer.echo(f"warning: {spec.warning}", err=True)
    for spec in bad:
        typer.echo(f"error: {spec.error}", err=True)
    if bad:
        raise typer.Exit(1)


@app.command("scan")
@one_line_errors
def scan_command(zoo: Path = typer.Option(..., help="Zoo folder."),
                 task: Path = typer.Option(..., help="Task: Parquet table (image, label, split) or ImageFolder tree."),
                 out: str = typer.Option("selkd-output/scan", help="Output folder (scores, cache, catalogue): a path or a pyarrow filesystem URI (s3://, gs://, file://)."),
                 scorer: list[str] = typer.Option(list(ScanConfig.scorers), help="Scorer (repeatable); the first ranks. See `selkd scorers`."),
                 probe_per_class: int = typer.Option(20, help="Probe images per target class (the last round's)."),
                 seed: int = typer.Option(0, help="Probe sampling seed."),
                 budget: Optional[str] = typer.Option(None, help="FLOPs (2e9, 2G) or wall time (300s, 5min); implies halving with --eta 3."),
                 eta: Optional[int] = typer.Option(None, help="Successive halving: keep the best 1/ETA each round."),
                 min_probe: Optional[int] = typer.Option(None, help="Images per class in the first halving round (default 2)."),
                 max_actors: Optional[int] = typer.Option(None, help="Cap on runner actors (default: one per GPU, else per CPU slot the work pays for)."),
                 experience: Optional[str] = EXPERIENCE,
                 json_output: bool = JSON, quiet: bool = QUIET,
                 address: Optional[str] = ADDRESS) -> None:
    """Score every teacher of the zoo on a probe of the task and write a ranked scores.parquet.

    Example: selkd scan --zoo ./zoo --task task.parquet --out scan-out --budget 5e9 --eta 3
    """
    eta = eta if eta is not None else (3 if budget else None)
    config = ScanConfig(tuple(scorer), probe_per_class, seed, max_actors, budget, eta, min_probe, experience)
    from selkd_ray.plans.scan import scan  # after the options' checks; not the api, which loads timm for distill
    from selkd_ray.reports.text import ranking_table, scan_summary

    with Display(quiet or json_output) as progress:
        result = scan(zoo, task, out, config, address=address, progress=progress)
    if json_output:
        progress.result(json.dumps(scan_json(result), default=float))
        return
    progress.result(ranking_table(result.rows, list(scorer)))
    progress.result(scan_summary(result))


@app.command("distill")
@one_line_errors
def distill_command(teacher: list[Path] = typer.Option([], help="Teacher folder; repeat it to distil from several teachers at once; omit for a label-only student."),
                    weights: Optional[str] = typer.Option(None, help="Several teachers' weights, comma-separated in --teacher order (0.7,0.3); default: from the --scan's scores, else equal."),
                    task: Path = typer.Option(..., help="Task: Parquet table or ImageFolder tree."),
                    out: Path = typer.Option(Path("selkd-output/students"), help="Output folder."),
                    scan_scores: Optional[Path] = typer.Option(None, "--scan", help="scores.parquet to take the cost matrix from."),
                    student: str = typer.Option("test_efficientnet", help="timm architecture of the student."),
                    loss: str = typer.Option("ot", help="ot (CE + Sinkhorn), kl (same label space) or ce."),
                    epochs: int = typer.Option(30), lam: float = typer.Option(1.0, "--lambda"),
                    tau: float = typer.Option(2.0), eps: float = typer.Option(0.05), seed: int = typer.Option(0),
                    workers: int = typer.Option(1, help="Ray Train workers."),
                    gpus: int = GPUS,
                    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a validation gain."),
                    max_flops: Optional[float] = typer.Option(None, help="Training FLOPs budget (e.g. 5e12)."),
                    augment: bool = typer.Option(False, help="Randomly shift images; the teacher then runs online in the workers."),
                    student_size: str = STUDENT_SIZE, per_image_weights: bool = PER_IMAGE, refit: bool = REFIT,
                    cache: Optional[str] = typer.Option(None, help="Prediction cache to share (default: OUT/cache, or the --scan folder's cache)."),
                    json_output: bool = JSON, quiet: bool = QUIET, address: Optional[str] = ADDRESS) -> None:
    """Distil a teacher (or several at once) into a small timm student on Ray Train; the student is saved as a
    teacher folder.

    Example: selkd distill --teacher zoo/digits-all --task task.parquet --scan scan-out/scores.parquet
    """
    from selkd_ray.config import DistillConfig
    from selkd_ray.errors import SelkdError
    from selkd_ray.mixture import check_mixture, check_per_image, parse_weights

    config = DistillConfig(student=student, loss=loss, epochs=epochs, lam=lam, tau=tau, eps=eps, seed=seed,
                           patience=patience, max_flops=max_flops, augment=augment, student_size=student_size,
                           per_image_weights=per_image_weights, refit=refit, keep="last" if refit else "best", **gpu_workers(gpus, workers))
    cache = distill_inputs(str(scan_scores) if scan_scores else None, cache)
    given = parse_weights(weights)
    if len(teacher) > 1:  # one line each, before any work
        check_mixture([str(t) for t in teacher], given, loss)
    elif given is not None:
        raise SelkdError("--weights: weights are for several teachers at once (repeat --teacher)")
    check_per_image(per_image_weights, len(teacher))
    from selkd_ray.api import distill  # after the options' checks: a bad option is answered before torch loads
    from selkd_ray.plans.inputs import as_task, cost_from_scan, weights_from_scan
    with Display(quiet or json_output) as progress:
        target = as_task(task, progress, address)
        costs = [cost_from_scan(scan_scores, t, target.num_classes) if scan_scores else None for t in teacher]
        if len(teacher) > 1 and given is None and scan_scores:
            given = weights_from_scan(scan_scores, teacher)
        result = distill(target, teacher if len(teacher) > 1 else (teacher[0] if teacher else None), out, config,
                         cost_matrix=costs if len(teacher) > 1 else (costs[0] if costs else None), address=address,
                         progress=progress, cache_dir=cache, weights=given)
    if json_output:
        progress.result(json.dumps(distill_json(result), default=str))
        return
    progress.result(f"test accuracy {result.test_accuracy:.4f}, validation accuracy {result.val_accuracy:.4f} "
               f"(best epoch {result.best_epoch + 1} of {len(result.history)}; {result.stopped or 'ran every epoch'}; "
               f"{result.flops:.3g} training FLOPs)")
    progress.result(f"student: {result.student_dir}\nmetrics: {result.metrics_path}\nlearning curve: {result.curve_path}")


@app.command("select")
@one_line_errors
def select_command(zoo: Path = typer.Option(..., help="Zoo folder."),
                   task: Path = typer.Option(..., help="Task: Parquet table or ImageFolder tree."),
                   out: Path = typer.Option(Path("selkd-output/select"), help="Output folder (scan, race, students, selection.parquet)."),
                   budget: Optional[str] = typer.Option(None, help="The whole pipeline's budget (scan, teachers' outputs, race, final distillation): FLOPs (5e13) or wall time (20min)."),
                   shortlist: int = typer.Option(3, help="Top-K teachers of the scan that enter the race."),
                   teacher: list[str] = typer.Option([], help="Teacher id to put at the top of the shortlist (repeatable)."),
                   race_epochs: int = typer.Option(6, help="Most epochs a race trial runs (ASHA stops weak trials earlier)."),
                   lambda_grid: str = typer.Option("1", help="OT-term weights to race per teacher, comma-separated (e.g. 0.3,1,3)."),
                   race: bool = typer.Option(True, "--race/--no-race", help="Race the shortlist, or distil the scan's top teacher directly."),
                   guard_z: float = typer.Option(0.5, help="Noise margin in standard errors on validation: the distilled student is kept only if it beats label-only by more, and a race trial overtakes a better-ranked teacher only by more."),
                   scorer: list[str] = typer.Option(list(ScanConfig.scorers), help="Scorer (repeatable); the first ranks."),
                   probe_per_class: int = typer.Option(20, help="Probe images per target class."),
                   epochs: int = typer.Option(30, help="Epochs of the final distillation."),
                   seed: int = typer.Option(0, help="Probe and student seed."),
                   gpus: int = GPUS,
                   trials_per_gpu: int = typer.Option(4, help="Race trials that share one GPU where the cluster has GPUs (each holds 1/N of one)."),
                   student_size: str = STUDENT_SIZE, per_image_weights: bool = PER_IMAGE, cover: bool = COVER,
                   mixture: int = typer.Option(0, help="Also race the shortlist's top K teachers as one mixture (distilled together, weighed by their scan scores); 0: no mixture."),
                   mixture_temperature: float = typer.Option(1.0, help="Temperature of the softmax over the mixture's standardised scan scores (large: equal weights)."),
                   experience: Optional[str] = EXPERIENCE, json_output: bool = JSON, quiet: bool = QUIET, address: Optional[str] = ADDRESS) -> None:
    """Scan, race the shortlisted teachers against a label-only student, distil the winner, and keep it only if
    it beats label-only on the validation split: a student never worse than training on labels alone.

    Example: selkd select --zoo ./zoo --task task.parquet --budget 2e13 --shortlist 3 --lambda-grid 0.3,1,3
    """
    from selkd_ray.config import DistillConfig
    from selkd_ray.selection import SelectConfig

    config = SelectConfig(ScanConfig(tuple(scorer), probe_per_class, seed, experience=experience),
                          DistillConfig(epochs=epochs, seed=seed, student_size=student_size,
                                        per_image_weights=per_image_weights, **gpu_workers(gpus, 1)),
                          budget, shortlist, tuple(teacher), race_epochs, lambda_values(lambda_grid), race=race,
                          guard_z=guard_z, trials_per_gpu=trials_per_gpu, mixture=mixture,
                          mixture_temperature=mixture_temperature, cover=cover)
    from selkd_ray.plans.select import select_student  # after the options' checks: before torch loads
    with Display(quiet or json_output) as progress:
        result = select_student(zoo, task, out, config, address=address, progress=progress)
    if json_output:
        progress.result(json.dumps(select_json(result), default=float))
        return
    progress.result(result.summary)


def lambda_values(grid: str) -> tuple[float, ...]:
    """--lambda-grid as numbers: one line when it is not a comma-separated list of non-negative numbers."""
    from selkd_ray.errors import SelkdError

    try:
        lambdas = tuple(float(v) for v in grid.split(",") if v.strip())
    except ValueError:
        raise SelkdError(f"--lambda-grid: '{grid}' is not a comma-separated list of numbers") from None
    if not lambdas or not all(lam >= 0 and lam != float("inf") for lam in lambdas):  # NaN fails lam >= 0
        raise SelkdError(f"--lambda-grid: expected non-negative numbers, got '{grid}'")
    return lambdas


def gpu_workers(gpus: int, workers: int) -> dict:
    """DistillConfig's worker fields for --gpus N (N Ray Train workers, one GPU each) beside --workers."""
    from selkd_ray.errors import SelkdError

    if gpus < 0 or workers < 1:
        raise SelkdError(f"--gpus / --workers: expected --gpus >= 0 and --workers >= 1, got {gpus} and {workers}")
    if gpus and workers not in (1, gpus):
        raise SelkdError(f"--workers {workers} with --gpus {gpus}: each GPU runs one worker; give one of them")
    return {"num_workers": gpus or workers, "use_gpu": gpus > 0}


@app.command()
def scorers(json_output: bool = JSON) -> None:
    """List the registered scorers and cost builders.

    Example: selkd scorers --json
    """
    from selkd_ray.scoring.costs import COST_BUILDERS
    from selkd_ray.scoring import SCORERS

    if json_output:
        typer.echo(json.dumps({"scorers": SCORERS.names(), "cost_builders": COST_BUILDERS.names()}))
        return
    typer.echo("scorers: " + ", ".join(SCORERS.names()))
    typer.echo("cost builders: " + ", ".join(COST_BUILDERS.names()))


@app.command()
@one_line_errors
def history(out: str = typer.Option("selkd-output/scan", help="The scan output folder (path or filesystem URI)."),
            json_output: bool = JSON) -> None:
    """Show every scan recorded in an output folder: when, zoo size, new and failed teachers, cost, top teachers.

    Example: selkd history --out selkd-output/scan
    """
    from selkd_ray.errors import SelkdError
    from selkd_ray.io.fs import Location
    from selkd_ray.io.history import read_history
    from selkd_ray.reports.text import history_table

    rows = read_history(Location(out) / "history.parquet")
    if not rows:
        raise SelkdError(f"{out}: no history.parquet; expected the output folder of at least one `selkd scan`")
    typer.echo(json.dumps(rows, default=float) if json_output else history_table(rows))


@app.command()
@one_line_errors
def report(out: str = typer.Option("selkd-output/scan", help="The scan output folder (path or filesystem URI)."),
           html_path: Optional[Path] = typer.Option(None, "--html", help="Where to write the report (default OUT/report.html).")) -> None:
    """Write an HTML report (ranking, score by round, spending against budget, history) to open in a browser.

    Example: selkd report --out selkd-output/scan && xdg-open selkd-output/scan/report.html
    """
    from selkd_ray.reports.html import write_report

    typer.echo(f"report: {write_report(out, html_path)}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
