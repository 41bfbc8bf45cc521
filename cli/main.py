"""`selkd`: thin commands over the selkd_ray API. Each parses options, builds a config, calls one function, prints."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from selkd_ray.config import ScanConfig

app = typer.Typer(help="Selective cross-task distillation over a model zoo, on Ray.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
zoo_app = typer.Typer(help="Manage a teacher zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

ADDRESS = typer.Option(None, "--address", help="Ray cluster address (host:port); default: $RAY_ADDRESS, else a local Ray.")


def say(message: str) -> None:
    typer.echo(message, err=True)


def one_line_errors(command):
    """Bad input ends in one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from selkd_ray.errors import SelkdError

        try:
            return command(*args, **kwargs)
        except SelkdError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return run


@app.command()
@one_line_errors
def demo(out: Path = typer.Option(Path("selkd-output/demo"), help="Where the zoo, task, scan and students go."),
         epochs: int = typer.Option(30, help="Student training epochs."),
         seed: int = typer.Option(0, help="Student seed."),
         address: Optional[str] = ADDRESS) -> None:
    """Build a real demo zoo (MNIST teachers), scan it for a held-out digit task, distil three students.

    Example: selkd demo --out selkd-output/demo
    """
    from selkd_ray.config import DistillConfig
    from selkd_ray.demo.run import run_demo

    result = run_demo(out, DistillConfig(epochs=epochs, seed=seed), address=address, progress=say)
    typer.echo(result.summary)


@zoo_app.command("index")
@one_line_errors
def zoo_index(zoo_dir: Path = typer.Argument(..., help="Folder of teacher folders (model.safetensors + config.json)."),
              out: Optional[Path] = typer.Option(None, help="Catalogue path (default ZOO_DIR/catalogue.parquet).")) -> None:
    """Index a zoo into a Parquet catalogue; only new or changed teachers are read.

    Example: selkd zoo index ./zoo
    """
    from selkd_ray.api import index_zoo

    specs, path = index_zoo(zoo_dir, out)
    bad = [s for s in specs if s.error]
    typer.echo(f"catalogue {path}: {len(specs) - len(bad)} teachers indexed, {len(bad)} invalid")
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
                 max_actors: Optional[int] = typer.Option(None, help="Cap on runner actors (default: one per GPU, else per CPU slot)."),
                 json_output: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
                 address: Optional[str] = ADDRESS) -> None:
    """Score every teacher of the zoo on a probe of the task and write a ranked scores.parquet.

    Example: selkd scan --zoo ./zoo --task task.parquet --out scan-out --budget 5e9 --eta 3
    """
    from selkd_ray.api import scan
    from selkd_ray.report import ranking_table, scan_summary

    eta = eta or (3 if budget else None)
    config = ScanConfig(tuple(scorer), probe_per_class, seed, max_actors, budget, eta, min_probe)
    with ScanProgress() as progress:
        result = scan(zoo, task, out, config, address=address, progress=progress.update)
    if json_output:
        typer.echo(json.dumps(scan_json(result), default=float))
        return
    typer.echo(ranking_table(result.rows, list(scorer)))
    typer.echo(scan_summary(result))


class ScanProgress:
    """A live bar (teachers done, failed, cached, budget spent) on a terminal; plain log lines otherwise."""

    def __init__(self) -> None:
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task("scan", total=None, counts="")

    def update(self, event) -> None:
        if self.bar is None:
            say(str(event))
            return
        if event.kind in ("round", "note", "failed"):
            self.bar.console.print(str(event))
        self.bar.update(self.task, completed=event.done, total=event.total or None,
                        counts=f"failed {event.failed}, cached {event.cached}; {event.spent}")

    def __enter__(self) -> "ScanProgress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def scan_json(result) -> dict:
    """The scan as one JSON document: counts, spending and every teacher's row (cost matrices left out)."""
    rows = [{k: v for k, v in row.items() if k != "cost_matrix"} for row in result.rows]
    return {"scores": str(result.scores_path), "catalogue": str(result.catalogue_path), "ran": result.ran,
            "cached": result.cached, "failed": result.failed, "dropped": result.dropped,
            "skipped": result.skipped, "flops": result.flops, "seconds": result.seconds, "spent": result.spent,
            "teachers": rows}


@app.command("distill")
@one_line_errors
def distill_command(teacher: Optional[Path] = typer.Option(None, help="Teacher folder; omit for a label-only student."),
                    task: Path = typer.Option(..., help="Task: Parquet table or ImageFolder tree."),
                    out: Path = typer.Option(Path("selkd-output/students"), help="Output folder."),
                    scan_scores: Optional[Path] = typer.Option(None, "--scan", help="scores.parquet to take the cost matrix from."),
                    student: str = typer.Option("test_efficientnet", help="timm architecture of the student."),
                    loss: str = typer.Option("ot", help="ot (CE + Sinkhorn), kl (same label space) or ce."),
                    epochs: int = typer.Option(30), lam: float = typer.Option(1.0, "--lambda"),
                    tau: float = typer.Option(2.0), eps: float = typer.Option(0.05), seed: int = typer.Option(0),
                    workers: int = typer.Option(1, help="Ray Train workers."),
                    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a validation gain."),
                    max_flops: Optional[float] = typer.Option(None, help="Training FLOPs budget (e.g. 5e12)."),
                    augment: bool = typer.Option(False, help="Randomly shift images; the teacher then runs online in the workers."),
                    cache: Optional[str] = typer.Option(None, help="Prediction cache to share (default: OUT/cache, or the --scan folder's cache)."),
                    address: Optional[str] = ADDRESS) -> None:
    """Distil a teacher into a small timm student on Ray Train; the student is saved as a teacher folder.

    Example: selkd distill --teacher zoo/digits-all --task task.parquet --scan scan-out/scores.parquet
    """
    from selkd_ray.api import as_task, cost_from_scan, distill
    from selkd_ray.config import DistillConfig

    target = as_task(task)
    cost = cost_from_scan(scan_scores, teacher.name, target.num_classes) if scan_scores and teacher else None
    config = DistillConfig(student=student, loss=loss, epochs=epochs, lam=lam, tau=tau, eps=eps, seed=seed,
                           num_workers=workers, patience=patience, max_flops=max_flops, augment=augment)
    cache = cache or (str(Path(scan_scores).parent / "cache") if scan_scores else None)
    result = distill(target, teacher, out, config, cost_matrix=cost, address=address, progress=say, cache_dir=cache)
    typer.echo(f"test accuracy {result.test_accuracy:.4f}, validation accuracy {result.val_accuracy:.4f} "
               f"(best epoch {result.best_epoch + 1} of {len(result.history)}; {result.stopped or 'ran every epoch'}; "
               f"{result.flops:.3g} training FLOPs)")
    typer.echo(f"student: {result.student_dir}\nmetrics: {result.metrics_path}\nlearning curve: {result.curve_path}")


@app.command()
def scorers() -> None:
    """List the registered scorers and cost builders."""
    from selkd_ray.costs import COST_BUILDERS
    from selkd_ray.scores import SCORERS

    typer.echo("scorers: " + ", ".join(SCORERS.names()))
    typer.echo("cost builders: " + ", ".join(COST_BUILDERS.names()))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
