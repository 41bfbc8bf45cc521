"""Scorers that cannot tell teachers apart are marked (scores.parquet, --json, the summary, the report), by
scoring/ties.py's rule: at least half of the scan's teachers (and at least 3) share one value."""
import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.config import ScanConfig
from selkd_ray.io.results import uninformative_in
from selkd_ray.reports.html import build_report
from selkd_ray.reports.text import scan_summary
from selkd_ray.rows import ScoreRow
from selkd_ray.scoring.ties import tied_value, uninformative


def row(name: str, probe: int = 15, **scores: float) -> ScoreRow:
    return ScoreRow(name, "", "arch", name, "scored", rank=1, probe_size=probe, scores=scores)


def test_the_rule_by_hand():
    assert tied_value([1.0] * 11 + [0.7]) == (1.0, 11)  # SFDA's saturation: 11 of 12 at exactly 1.0
    assert tied_value([0.0, 0.0, 0.3, 0.4]) == (0.0, 2)  # half of them
    assert tied_value([0.1, 0.2, 0.3, 0.3, 0.5]) is None  # 2 of 5 share a value: the order still means something
    assert tied_value([1.0, 1.0]) is None  # too few teachers to say
    assert tied_value([0.5, 0.5 + 1e-12, 0.5 - 1e-12]) == (0.5, 3)  # the same to 9 significant digits
    rows = [row(f"t{i}", sfda=1.0 if i < 11 else 0.2, nleep=0.0 if i < 10 else -0.1 * i, leep=-0.1 * i)
            for i in range(12)] + [ScoreRow("gone", "", "", "g", "failed")]
    said = uninformative(rows, ("sfda", "nleep", "leep"))
    assert said == {"sfda": "11 of 12 teachers share one value (1) on a probe of 15 images",
                    "nleep": "10 of 12 teachers share one value (0) on a probe of 15 images"}


def test_a_real_scans_tied_scorer_is_marked_everywhere(scan_here, tiny_zoo, target_task, task_path, tmp_path):
    """On a probe of 6 images per class, kNN's leave-one-out accuracy takes few values: two of the three tiny
    teachers get the same one, while LEEP tells all three apart. Only kNN is marked, in every output."""
    result = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("leep", "knn"), probe_per_class=6,
                                                                   min_probe=6))
    values = {r.teacher_id: r.scores["knn"] for r in result.rows}
    shared, count = Counter(values.values()).most_common(1)[0]
    assert count >= 2, values  # the premise: the tie is there
    assert len({r.scores["leep"] for r in result.rows}) == 3
    assert result.uninformative == {"knn": f"{count} of 3 teachers share one value ({shared:.6g}) on a probe of 18 images"}
    assert uninformative_in(tmp_path / "scores.parquet") == result.uninformative
    line, = [l for l in scan_summary(result).splitlines() if l.startswith("uninformative on this probe")]
    assert "knn: " in line and "leep" not in line
    assert "could not tell the teachers apart" in build_report(tmp_path) and "knn" in build_report(tmp_path)
    again = CliRunner().invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(tmp_path),
                                     "--scorer", "leep", "--scorer", "knn", "--probe-per-class", "6",
                                     "--min-probe", "6", "--json"])  # the same scan, answered from its table
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["uninformative"] == result.uninformative
