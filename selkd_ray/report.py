"""Reports a person reads: the ranking as a text table and a bar plot."""
from __future__ import annotations

from pathlib import Path


def ranking_table(rows: list[dict], scorer_names: list[str], limit: int | None = None) -> str:
    widths = [max(8, len(n)) for n in scorer_names]
    header = f"{'rank':>4}  {'teacher':<16} {'arch':<18} {'status':<7} " + " ".join(
        f"{n:>{w}}" for n, w in zip(scorer_names, widths))
    lines = [header, "-" * len(header)]
    for row in rows[:limit] if limit else rows:
        if row["status"] == "failed":
            lines.append(f"{'-':>4}  {row['teacher_id']:<16} {row['architecture'] or '?':<18} failed  {row['error']}")
            continue
        scores = " ".join(f"{row.get(f'score_{n}', float('nan')):>{w}.4f}" for n, w in zip(scorer_names, widths))
        lines.append(f"{row['rank']:>4}  {row['teacher_id']:<16} {row['architecture']:<18} {row['status']:<7} {scores}")
    return "\n".join(lines)


def ranking_plot(rows: list[dict], scorer: str, path: str | Path) -> Path:
    """Horizontal bars of the ranking score, best teacher on top with the longest bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = [r for r in rows if r["status"] != "failed"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ranked) + 1.2))
    names = [r["teacher_id"] for r in ranked][::-1]
    values = [r["score"] for r in ranked][::-1]
    spread = (max(values) - min(values)) or 1.0
    floor = min(values) - 0.05 * spread  # bars grow from just below the worst score: longest = best teacher
    ax.barh(names, [v - floor for v in values], left=floor, color="#4477aa")
    ax.set_xlabel(f"{scorer} score (higher = better teacher)")
    ax.set_title("Teacher ranking")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scan_summary(result) -> str:
    """What the scan did, in words: teachers run, cached, failed, dropped at which round, spent against budget."""
    lines = [f"{result.ran} teachers run to the end, {result.cached} from cache, {result.failed} failed, "
             f"{result.dropped} dropped by halving, {result.skipped} stopped by the budget; {result.spent}"]
    dropped: dict[int, list[str]] = {}
    for row in result.rows:
        if row["status"] == "dropped":
            dropped.setdefault(row["round"], []).append(row["teacher_id"])
    lines += [f"dropped after round {r + 1}: {', '.join(names)}" for r, names in sorted(dropped.items())]
    skipped = [row["teacher_id"] for row in result.rows if row["status"] in ("skipped", "unfinished")]
    if skipped:
        lines.append(f"not run for lack of budget: {', '.join(skipped)}")
    lines.append(f"scores: {result.scores_path}")
    return "\n".join(lines)


def learning_curve(history: list[dict], path: str | Path, title: str) -> Path:
    """Training loss and validation accuracy per epoch, the kept (best-validation) epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    fig, loss_ax = plt.subplots(figsize=(6.5, 3.6))
    loss_ax.plot(epochs, [row["loss"] for row in history], color="#4477aa", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="#4477aa")
    acc_ax = loss_ax.twinx()
    acc_ax.plot(epochs, [row["val_accuracy"] for row in history], color="#ee6677", label="validation accuracy")
    acc_ax.set_ylabel("validation accuracy", color="#ee6677")
    best = [row["epoch"] + 1 for row in history if row.get("best")]
    if best:
        acc_ax.axvline(best[0], color="grey", ls="--", lw=0.8)
    loss_ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
