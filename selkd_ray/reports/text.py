"""Reports a person reads in a terminal: the ranking as a table, what a scan did, the scan history."""
from __future__ import annotations

from ..rows import ScoreRow
from ..scoring.ties import describe as describe_ties


def ranking_table(rows: list[ScoreRow], scorer_names: list[str], limit: int | None = None) -> str:
    widths = [max(8, len(n)) for n in scorer_names]
    name_width = max([16] + [len(row.teacher_id) for row in rows])
    arch_width = max([18] + [len(row.architecture or "") for row in rows])
    header = f"{'rank':>4}  {'teacher':<{name_width}} {'arch':<{arch_width}} {'status':<7} " + " ".join(
        f"{n:>{w}}" for n, w in zip(scorer_names, widths))
    lines = [header, "-" * len(header)]
    for row in rows[:limit] if limit else rows:
        if row.status == "failed":
            lines.append(f"{'-':>4}  {row.teacher_id:<{name_width}} {row.architecture or '?':<{arch_width}} failed  "
                         f"{row.error}")
            continue
        scores = " ".join(f"{row.score_of(n):>{w}.4f}" for n, w in zip(scorer_names, widths))
        lines.append(f"{row.rank:>4}  {row.teacher_id:<{name_width}} {row.architecture:<{arch_width}} "
                     f"{row.status:<7} {scores}")
    return "\n".join(lines)



def scan_summary(result) -> str:
    """What the scan did, in words: teachers run, cached, failed, dropped at which round, spent against budget."""
    lines = [f"{result.ran} teachers run to the end, {result.cached} from cache, {result.failed} failed, "
             f"{result.dropped} dropped by halving, {result.skipped} stopped by the budget; {result.spent}"]
    dropped: dict[int, list[str]] = {}
    for row in result.rows:
        if row.status == "dropped":
            dropped.setdefault(row.round, []).append(row.teacher_id)
    lines += [f"dropped after round {r + 1}: {', '.join(names)}" for r, names in sorted(dropped.items())]
    skipped = [row.teacher_id for row in result.rows if row.status in ("skipped", "unfinished")]
    if skipped:
        lines.append(f"not run for lack of budget: {', '.join(skipped)}")
    if result.recomputed:
        lines.append(f"{len(result.recomputed)} bad cache entries recomputed and rewritten: "
                     + "; ".join(result.recomputed))
    if tied := describe_ties(getattr(result, "uninformative", {})):
        lines.append(tied)
    lines.append(f"scores: {result.scores_path}")
    return "\n".join(lines)


def history_table(history: list[dict], top: int = 3) -> str:
    """Every recorded scan, oldest first: when, zoo size, what ran, what it cost, its top teachers."""
    header = f"{'scanned at (UTC)':<26} {'zoo':>5} {'new':>5} {'ran':>5} {'cached':>6} {'failed':>6} {'FLOPs':>9} {'seconds':>8}  top teachers"
    lines = [header, "-" * len(header)]
    for row in history:
        best = ", ".join(f"{name} ({score:.3f})" for name, score in
                         list(zip(row.get("top_teachers") or [], row.get("top_scores") or []))[:top])
        lines.append(f"{row['scanned_at']:<26} {row['zoo_size']:>5} {row['new']:>5} {row['ran']:>5} {row['cached']:>6} "
                     f"{row['failed']:>6} {row['flops']:>9.3g} {row['seconds']:>8.1f}  {best}")
    return "\n".join(lines)
