"""The ranking benchmark's learned rankers: `learned` fitted on other targets' outcomes, scored on a target its
fit never saw, beside the cold-start aggregate; the learning curve; the product's sequence of selections.

A benchmark unit (target, seed) is one task of experience: its teachers' scores on that seed's probe and their
outcomes (the distilled student's test accuracy less the label-only student's). The fit that ranks a target
never holds any unit of that target (neither seed): the rule the product applies to a task's own outcomes.
"""
from __future__ import annotations

import numpy as np

from selkd_ray.experience import label_overlap
from selkd_ray.scoring.rankers import Candidate, TaskEvidence, score_task


def experience_units(scans: dict, truth: list[dict], specs: dict, label_names: dict) -> dict:
    """(target, seed) -> the unit's candidates with outcomes, in the scan's row order (failed teachers out)."""
    accuracy = {(r["target"], r["seed"], r["teacher_id"]): r["test_accuracy"] for r in truth}
    units = {}
    for (target, seed), rows in sorted(scans.items()):
        reference = accuracy[(target, seed, "labels-only")]
        units[(target, seed)] = tuple(
            Candidate(row.teacher_id, dict(row.scores), float(specs[row.teacher_id].param_count),
                      float(specs[row.teacher_id].flops_per_sample), specs[row.teacher_id].num_classes,
                      label_overlap(specs[row.teacher_id].label_names, label_names[target]),
                      accuracy[(target, seed, row.teacher_id)] - reference)
            for row in rows if row.status != "failed")
    return units


def history(units: dict, targets: set[str]) -> dict:
    return {f"{target}/seed{seed}": candidates for (target, seed), candidates in units.items() if target in targets}


def ranked_by(name: str, units: dict, unit: tuple[str, int], fit_on: set[str]) -> tuple[np.ndarray, str]:
    """One unit's values of a task scorer, fitted (for `learned`) on the units of the `fit_on` targets."""
    target, seed = unit
    assert target not in fit_on, "a target's own outcomes never rank it"
    evidence = TaskEvidence(f"{target}/seed{seed}", units[unit], history(units, fit_on))
    values, notes = score_task([name], evidence)
    return np.array(values[name], dtype=float), "; ".join(notes)


def source_of(target: str) -> str:
    return target.split("-")[0]


FITS = {  # name in the tables -> (task scorer, the targets its fit may see when ranking `target`)
    "aggregate": ("aggregate", lambda target, all_targets: set()),
    "learned-loto": ("learned", lambda target, all_targets: set(all_targets) - {target}),
    "learned-xsrc": ("learned", lambda target, all_targets: {t for t in all_targets
                                                             if source_of(t) != source_of(target)}),
}


def learned_unit_rows(units: dict, unit_metrics, labels_only: dict) -> list[dict]:
    """Per (target, seed, ranker): the unit's metrics, as `ranking.evaluate_scorers` gives the single scorers.
    `learned-loto` fits on the other seven targets, `learned-xsrc` on the other source's four."""
    all_targets = sorted({target for target, _ in units})
    rows = []
    for unit, candidates in sorted(units.items()):
        accuracy = np.array([c.outcome for c in candidates]) + labels_only[unit]
        for label, (name, fit_on) in FITS.items():
            values, _ = ranked_by(name, units, unit, fit_on(unit[0], all_targets))
            rows.append({"target": unit[0], "seed": unit[1], "scorer": label, "labels_only_accuracy": labels_only[unit],
                         "best_gain": float(accuracy.max() - labels_only[unit]), **unit_metrics(values, accuracy)})
    return rows


def learning_curve(units: dict, unit_metrics, sizes=(1, 2, 4, 7), draws: int = 10, seed: int = 0) -> list[dict]:
    """`learned`'s weighted tau on each target after k other targets of experience (k in `sizes`; `draws`
    random choices of the k, seeded), averaged over draws, seeds and then targets: does it improve with use?"""
    rng = np.random.default_rng(seed)
    all_targets = sorted({target for target, _ in units})
    rows = []
    for k in sizes:
        per_target, fell_back = [], 0
        for target in all_targets:
            others = [t for t in all_targets if t != target]
            if k > len(others):
                continue
            taus = []
            choices = [others] if k == len(others) else [list(rng.choice(others, size=k, replace=False))
                                                         for _ in range(draws)]
            for chosen in choices:
                for unit in [u for u in units if u[0] == target]:
                    values, note = ranked_by("learned", units, unit, set(chosen))
                    fell_back += bool(note)
                    outcomes = np.array([c.outcome for c in units[unit]])
                    taus.append(unit_metrics(values, outcomes)["weighted_tau"])
            per_target.append(float(np.nanmean(taus)))
        if per_target:
            rows.append({"tasks": k, "weighted_tau": float(np.mean(per_target)), "targets": len(per_target),
                         "fell_back": fell_back})
    return rows


def product_sequence(units: dict, unit_metrics, order: list[str]) -> list[dict]:
    """Selections in `order`, each appending its outcomes (both seeds) to one experience table, each ranking
    with `learned` fitted on what came before (the aggregate until there is enough): the top-1 and top-3
    regret of the ranking the race would start from, by position. The race's own cost is not run here."""
    rows, seen = [], set()
    for position, target in enumerate(order, 1):
        metrics, notes = [], []
        for unit in sorted(u for u in units if u[0] == target):
            values, note = ranked_by("learned", units, unit, set(seen))
            notes.append(note)
            outcomes = np.array([c.outcome for c in units[unit]])
            metrics.append(unit_metrics(values, outcomes))
        rows.append({"position": position, "target": target, "experience_targets": len(seen),
                     "ranked_by": "aggregate (too little experience)" if any(notes) else "learned",
                     **{m: float(np.nanmean([x[m] for x in metrics])) for m in ("weighted_tau", "regret_top1",
                                                                                 "regret_top3")}})
        seen.add(target)
    return rows


def curve_table(rows: list[dict]) -> str:
    lines = [f"{'tasks of experience':>20} {'weighted tau':>13} {'targets':>8} {'fell back':>10}"]
    lines += [f"{r['tasks']:>20} {r['weighted_tau']:>+13.3f} {r['targets']:>8} {r['fell_back']:>10}" for r in rows]
    return "\n".join(lines)


def sequence_table(rows: list[dict]) -> str:
    lines = [f"{'#':>2} {'target':<14} {'experience':>10} {'ranked by':<34} {'w. tau':>7} {'top-1 regret':>13} "
             f"{'top-3 regret':>13}"]
    lines += [f"{r['position']:>2} {r['target']:<14} {r['experience_targets']:>10} {r['ranked_by']:<34} "
              f"{r['weighted_tau']:>+7.3f} {r['regret_top1']:>+13.3f} {r['regret_top3']:>+13.3f}" for r in rows]
    return "\n".join(lines)


def goal_verdict(summary: list[dict], single: list[str]) -> str:
    """Whether `learned` (leave-one-target-out) beat the best single scorer by 0.1 weighted tau and stayed within
    the aggregate's interval (not below it beyond noise), in one line."""
    by = {row["scorer"]: row for row in summary}
    learned, aggregate = by.get("learned-loto"), by.get("aggregate")
    singles = [by[name] for name in single if name in by and name != "random"]
    if not learned or not aggregate or not singles:
        return "goal: not measurable on this plan"
    best = max(singles, key=lambda r: r["weighted_tau"])
    margin = learned["weighted_tau"] - best["weighted_tau"]
    safe = learned["weighted_tau_high"] >= aggregate["weighted_tau"]
    met = margin >= 0.1 and safe
    return (f"goal {'met' if met else 'not met'}: learned (leave-one-target-out) {learned['weighted_tau']:+.3f} "
            f"against the best single scorer ({best['scorer']}) {best['weighted_tau']:+.3f}: "
            f"{margin:+.3f} (goal +0.100); against the cold-start aggregate {aggregate['weighted_tau']:+.3f}: "
            f"{'within or above' if safe else 'below'} its noise")
