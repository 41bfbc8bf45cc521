"""Figures a person reads: the ranking, the score by round, spending against budget, the top teachers over
scans, a student's learning curve (matplotlib, file-only)."""
from __future__ import annotations

from pathlib import Path

from ..rows import EpochRow, ScoreRow


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and Ray workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ranking_figure(rows: list[ScoreRow], scorer: str):
    """Horizontal bars of the ranking score, best teacher on top with the longest bar."""
    plt = pyplot()
    ranked = [r for r in rows if r.status != "failed" and r.score is not None]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ranked) + 1.2))
    names = [r.teacher_id for r in ranked][::-1]
    values = [r.score for r in ranked][::-1]
    spread = (max(values) - min(values)) or 1.0 if values else 1.0
    floor = min(values) - 0.05 * spread if values else 0.0  # bars grow from just below the worst score
    ax.barh(names, [v - floor for v in values], left=floor, color="#4477aa")
    ax.set_xlabel(f"{scorer} score (higher = better teacher)")
    ax.set_title("Teacher ranking")
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (to embed in an HTML report), closed afterwards."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    return buffer.getvalue()


def ranking_plot(rows: list[ScoreRow], scorer: str, path: str | Path) -> Path:
    return save_figure(ranking_figure(rows, scorer), path)


def rounds_figure(rows: list[ScoreRow], scorer: str, highlight: int = 5):
    """The ranking score of every teacher after each halving round it reached: who was dropped where, and
    how the estimate moved as the probe grew. The final top teachers are drawn in colour and named."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ranked = [r for r in rows if r.rank is not None and r.round_scores]
    for row in reversed(ranked):
        scores = row.round_scores
        top = row.rank <= highlight
        ax.plot(range(1, len(scores) + 1), scores, marker="o", ms=3, lw=1.6 if top else 0.8,
                color=None if top else "#bbbbbb", label=f"{row.rank}. {row.teacher_id}" if top else None,
                zorder=3 if top else 1)
    rounds = max((len(r.round_scores) for r in ranked), default=1)
    ax.set_xticks(range(1, rounds + 1))
    ax.set_xlabel("halving round (the probe grows each round)")
    ax.set_ylabel(f"{scorer} score")
    ax.set_title("Score against budget round (grey: dropped or outside the top)")
    if any(r.rank <= highlight for r in ranked):
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def spending_figure(stages: list[tuple[str, float]], budget: float | None, unit: str = "FLOPs"):
    """What each step spent, stacked into a running total, against the budget line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    total = 0.0
    for index, (label, amount) in enumerate(stages):
        ax.bar(index, amount, bottom=total, color="#4477aa" if index % 2 == 0 else "#66ccee")
        ax.text(index, total + amount, f"{total + amount:.3g}", ha="center", va="bottom", fontsize=7)
        total += amount
    ax.set_xticks(range(len(stages)), [label for label, _ in stages], fontsize=8)
    title = "Spent against budget"
    if budget and budget <= 3 * total:
        ax.axhline(budget, color="#ee6677", ls="--", lw=1.2, label=f"budget {budget:.3g} {unit}")
        ax.legend(fontsize=8, loc="upper left")
    if budget:  # a budget far above the spending would flatten the bars: say the share instead
        title += f": {total:.3g} of {budget:.3g} {unit} ({total / budget:.1%})"
    ax.set_ylabel(f"{unit} spent (running total)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def top_changes_figure(history: list[dict], top_k: int = 5):
    """The rank of every teacher that was ever in a scan's top k, scan after scan (a bump chart)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = sorted({name for row in history for name in (row.get("top_teachers") or [])[:top_k]})
    for name in names:
        points = [(i + 1, row["top_teachers"].index(name) + 1) for i, row in enumerate(history)
                  if name in (row.get("top_teachers") or [])[:top_k]]
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xticks(range(1, len(history) + 1), [f"{i + 1}\n{row['scanned_at'][5:16]}" for i, row in
                                                 enumerate(history)], fontsize=7)
    ax.set_ylim(top_k + 0.5, 0.5)
    ax.set_xlabel("scan")
    ax.set_ylabel("rank")
    ax.set_title(f"How the top {top_k} teachers changed over scans")
    if names:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def learning_curve(history: list[EpochRow], path: str | Path, title: str) -> Path:
    """Training loss and validation accuracy per epoch, the kept (best-validation) epoch marked."""
    plt = pyplot()
    epochs = [row.epoch + 1 for row in history]
    fig, loss_ax = plt.subplots(figsize=(6.5, 3.6))
    loss_ax.plot(epochs, [row.loss for row in history], color="#4477aa", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="#4477aa")
    acc_ax = loss_ax.twinx()
    acc_ax.plot(epochs, [row.val_accuracy for row in history], color="#ee6677", label="validation accuracy")
    acc_ax.set_ylabel("validation accuracy", color="#ee6677")
    best = [row.epoch + 1 for row in history if row.best]
    if best:
        acc_ax.axvline(best[0], color="grey", ls="--", lw=0.8)
    loss_ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
