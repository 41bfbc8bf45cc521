"""`selkd experience`: what the selections have measured so far (the experience table their races append to)."""
from __future__ import annotations

import json
import math

import typer

from .running import Display, one_line_errors

experience_app = typer.Typer(help="What the selections' races have measured: the experience table.",
                             no_args_is_help=True)
WHERE = typer.Option("selkd-output/select/experience", "--experience",
                     help="The experience folder (a path or filesystem URI): a select's OUT/experience, or the "
                          "shared folder its --experience named.")


@experience_app.command("show")
@one_line_errors
def show(experience: str = WHERE, json_output: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """How many tasks, outcomes and teachers the experience holds, how often a teacher beat labels alone, and
    how well each scorer's ranking has agreed with what the races measured (Kendall's tau within each task).

    Example: selkd experience show --experience selkd-output/select/experience
    """
    from selkd_ray.experience import summary

    with Display(True):
        held = summary(rows_of(experience))
    if json_output:
        typer.echo(json.dumps(without_nan(held)))
        return
    typer.echo(f"{experience}: {held['tasks']} task(s), {held['outcomes']} outcome(s), {held['teachers']} "
               f"teacher(s); a teacher beat labels alone in {held['helped']} of {held['outcomes']}")
    ranked = sorted(held["agreement"].items(), key=lambda kv: -kv[1]["tau"] if math.isfinite(kv[1]["tau"]) else 2)
    for name, agreed in ranked:
        tau = f"{agreed['tau']:+.2f}" if math.isfinite(agreed["tau"]) else "  n/a"
        typer.echo(f"  {name:<14} tau {tau} over {agreed['tasks']} task(s)")


@experience_app.command("fit")
@one_line_errors
def fit(experience: str = WHERE, json_output: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """Fit the `learned` scorer on the experience and say how it does: the weight of each feature (within-task
    ranks of the scorers and static facts), and its leave-one-task-out weighted tau beside the cold-start
    aggregate's. A scan with `--scorer learned` fits the same way on every task but its own.

    Example: selkd experience fit --experience selkd-output/select/experience
    """
    from selkd_ray.experience import fit_report

    with Display(True):
        report = fit_report(rows_of(experience))
    if json_output:
        typer.echo(json.dumps(without_nan(report)))
        return
    typer.echo(f"{experience}: {report['tasks']} task(s), {report['outcomes']} outcome(s)")
    if report["refused"]:
        typer.echo(f"  no fit: {report['refused']}; `learned` ranks as the cold-start aggregate")
    for name, weight in sorted(report["weights"].items(), key=lambda kv: -abs(kv[1])):
        typer.echo(f"  weight {name:<16} {weight:+.3f}")
    for name, held in report["leave_one_task_out"].items():
        tau = f"{held['tau']:+.3f}" if math.isfinite(held["tau"]) else "   n/a"
        typer.echo(f"  leave-one-task-out weighted tau, {name:<9} {tau} over {held['tasks']} task(s)")


def rows_of(experience: str) -> list:
    """Every outcome of the table, read against the scorers this selkd-ray knows (a bad part: one line)."""
    from selkd_ray.io.experience import read_experience
    from selkd_ray.scoring import SCORERS

    return read_experience(experience, set(SCORERS.names()), flag="--experience")


def without_nan(value):
    """NaN (a scorer that told nothing yet) as JSON's null: NaN is not JSON."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
