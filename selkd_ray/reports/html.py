"""The HTML report a person opens in a browser: tables and plots (embedded as PNG) of a scan output folder.

It reads what the scan (and a selection run, where there was one) wrote: scores.parquet, history.parquet and
selection.parquet. One self-contained file: no scripts, no external assets, so it can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from ..errors import SelkdError
from ..io.atomic import naming
from ..io.fs import Location
from ..io.history import read_history
from ..io.results import read_scores, read_selection, uninformative_in
from ..rows import as_row
from .plots import (figure_png, ranking_figure, rounds_figure, spending_figure, top_changes_figure)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.verdict{padding:.6em 1em;border-left:4px solid #4477aa;background:#f4f8fc}.warn{border-color:#ee6677;background:#fdf3f4}"""


def cell(value, left: bool = False) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) >= 1e5 else f"{value:.4f}"
    else:
        text = "" if value is None else str(value)
    return f'<td class="l">{html.escape(text)}</td>' if left else f"<td>{html.escape(text)}</td>"


def table(rows: list[dict], columns: list[str], left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c), c in left) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def scan_stages(last: dict) -> list[tuple[str, float]]:
    """Per-round FLOPs of one scan from its cumulative round totals."""
    totals = list(last.get("round_flops") or [last.get("flops") or 0])
    return [(f"round {i + 1}", float(b - a)) for i, (a, b) in enumerate(zip([0] + totals[:-1], totals))]


def selection_section(selection: list[dict]) -> str:
    """The race and the guard: which candidate won, what each stage spent, which student was kept and why."""
    decision = next((row for row in selection if row["kind"] == "decision"), None)
    trials = [row for row in selection if row["kind"] == "trial"]
    parts = ["<h2>Selection: race and guard</h2>"]
    if decision:
        warn = " warn" if decision.get("kept") == "labels-only" else ""
        parts.append(f'<p class="verdict{warn}">{html.escape(decision.get("message") or "")}</p>')
    if trials:
        weights = ["weights"] if any(t.get("weights") for t in trials) else []  # a mixture raced: its members' weights
        parts.append(table([{**t, "lambda": t["lam"]} for t in trials],
                           ["candidate", "lambda", *weights, "epochs", "val_accuracy", "status", "flops"],
                           left=("candidate", "weights", "status")))
    stages = [row for row in selection if row["kind"] == "stage"]
    if stages:
        budget = next((row["budget"] for row in stages if row.get("budget")), None)
        parts.append(table([{**r, "stage": r["candidate"]} for r in stages],
                           ["stage", "flops", "seconds", "val_accuracy", "test_accuracy", "budget"], left=("stage",)))
        parts.append(image(figure_png(spending_figure([(r["candidate"], float(r["flops"])) for r in stages],
                                                      budget)), "spent against budget by stage"))
    return "\n".join(parts)


def heading(scan_dir: Location, last: dict, history: list[dict], rows: list, failed: list) -> list[str]:
    """The page's head and its first paragraph: the output folder and what its last scan did."""
    return [f"<!doctype html><html><head><meta charset='utf-8'><title>selkd report: {html.escape(last.get('task', ''))}"
            f"</title><style>{STYLE}</style></head><body>",
            f"<h1>Teacher selection report: {html.escape(last.get('task', '') or scan_dir.native())}</h1>",
            f"<p>Output folder <code>{html.escape(str(scan_dir.native()))}</code>; {len(history)} scan(s) recorded, "
            f"the last at {html.escape(last.get('scanned_at', '?'))}: {last.get('zoo_size', len(rows))} teachers, "
            f"{last.get('new', '?')} new, {last.get('ran', '?')} run, {last.get('cached', '?')} from cache, "
            f"{last.get('failed', len(failed))} failed, {last.get('flops', 0):.3g} FLOPs in "
            f"{last.get('seconds', 0.0):.1f} s"
            f"{' against a budget of ' + html.escape(last['budget']) if last.get('budget') else ''}.</p>"]


def build_report(scan_dir: "str | Path | Location", top: int = 20) -> str:
    """The report's HTML for a scan output folder (local path or filesystem URI)."""
    scan_dir = Location(scan_dir)
    scores_path = scan_dir / "scores.parquet"
    if not scores_path.is_file():
        raise SelkdError(f"{scores_path.native()}: missing; expected the output folder of `selkd scan`")
    rows = read_scores(scores_path)
    history = read_history(scan_dir / "history.parquet")
    selection = read_selection(scan_dir / "selection.parquet")
    scorer = history[-1]["scorer"] if history else "score"
    last = history[-1] if history else {}
    ranked = [r for r in rows if r.rank is not None]
    failed = [r for r in rows if r.status == "failed"]
    parts = heading(scan_dir, last, history, rows, failed)
    if selection:
        parts.append(selection_section(selection))
    parts += ["<h2>Ranking</h2>",
              table([as_row(r) for r in ranked[:top]], ["rank", "teacher_id", "architecture", "status", "score", "round", "flops"],
                    left=("teacher_id", "architecture", "status")),
              image(figure_png(ranking_figure(ranked[:top], scorer)), "ranking with score bars")]
    if tied := uninformative_in(scores_path):
        parts += ["<h3>Scorers that could not tell the teachers apart</h3>",
                  "<p>Their order is the tie-break's, not theirs; a larger probe (<code>--probe-per-class</code>) "
                  "may separate them.</p>",
                  table([{"scorer": name, "why": why} for name, why in tied.items()], ["scorer", "why"],
                        left=("scorer", "why"))]
    if failed:
        parts += ["<h3>Failed teachers</h3>", table([as_row(r) for r in failed], ["teacher_id", "error"], left=("teacher_id", "error"))]
    parts += ["<h2>Score against budget round</h2>", image(figure_png(rounds_figure(rows, scorer)), "score by round")]
    if last:
        parts += ["<h2>Spent against budget (last scan)</h2>",
                  image(figure_png(spending_figure(scan_stages(last), last.get("budget_flops"))), "scan spending")]
    if history:
        parts += ["<h2>Scan history</h2>",
                  table([{**h, "top": ", ".join((h.get("top_teachers") or [])[:3])} for h in history],
                        ["scanned_at", "zoo_size", "new", "ran", "cached", "failed", "flops", "seconds", "budget", "top"],
                        left=("scanned_at", "budget", "top")),
                  image(figure_png(top_changes_figure(history)), "top teachers over scans")]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(scan_dir: "str | Path | Location", out: str | Path | None = None) -> Path:
    """Write the HTML report (default SCAN_DIR/report.html, or ./report.html for a remote scan folder)."""
    location = Location(scan_dir)
    path = Path(out) if out else (Path(location.path) / "report.html" if location.is_local else Path("report.html"))
    text = build_report(location)
    if path.is_dir():
        raise SelkdError(f"--html: {path} is a directory; expected the report's file path")
    staging = path.with_name(f".{path.name}.tmp")
    try:
        with naming(path):
            staging.write_text(text, encoding="utf-8")
            staging.replace(path)
    finally:
        try:
            staging.unlink(missing_ok=True)  # a failed write leaves nothing behind
        except OSError:
            pass  # a read-only folder, where no staging file could be made
    return path
