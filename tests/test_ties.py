"""Scorers that cannot tell teachers apart are marked (scores.parquet, --json, the summary, the report), by
scoring/ties.py's rule: at least half of the scan's teachers (and at least 3) share one value."""
import json
from collections import Counter
from pathlib import Path

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


def sharpened_copy(teacher: Path, folder: Path, factor: float = 3.0) -> Path:
    """The teacher with its classifier's weights and bias multiplied by `factor`: the same features (so the same
    kNN accuracy, to the last bit, whatever the machine's arithmetic) and the same predicted classes, but surer
    probabilities (so another LEEP)."""
    import shutil

    import timm
    from safetensors.torch import load_file, save_file

    shutil.copytree(teacher, folder)
    architecture = json.loads((folder / "config.json").read_text())["architecture"]
    head = timm.create_model(architecture, pretrained=False).pretrained_cfg["classifier"]
    weights = load_file(folder / "model.safetensors")
    for name in (f"{head}.weight", f"{head}.bias"):
        weights[name] = weights[name] * factor
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_real_scans_tied_scorer_is_marked_everywhere(scan_here, zoo_copy, target_task, task_path, tmp_path):
    """A real scan of four teachers, two of which share their features (the random-label teacher and a copy of
    it with a scaled classifier): kNN, which reads features, gives the two the same value; LEEP, which reads
    probabilities, tells all four apart. Only kNN is marked, in every output. (The tie is built, not hoped for:
    the tiny teachers' own values differ from one machine's arithmetic to another's.)"""
    sharpened_copy(zoo_copy / "random", zoo_copy / "random-sharp")
    out = tmp_path / "out"
    result = scan_here(zoo_copy, target_task, out, ScanConfig(scorers=("leep", "knn"), probe_per_class=6,
                                                              min_probe=6))
    values = {r.teacher_id: r.scores["knn"] for r in result.rows}
    assert values["random"] == values["random-sharp"], values  # the premise: the tie is there
    shared, count = Counter(values.values()).most_common(1)[0]
    assert len({r.scores["leep"] for r in result.rows}) == 4
    assert result.uninformative == {
        "knn": f"{count} of 4 teachers share one value ({shared:.6g}) on a probe of 18 images"}
    assert uninformative_in(out / "scores.parquet") == result.uninformative
    line, = [l for l in scan_summary(result).splitlines() if l.startswith("uninformative on this probe")]
    assert "knn: " in line and "leep" not in line
    assert "could not tell the teachers apart" in build_report(out) and "knn" in build_report(out)
    again = CliRunner().invoke(app, ["scan", "--zoo", str(zoo_copy), "--task", str(task_path), "--out", str(out),
                                     "--scorer", "leep", "--scorer", "knn", "--probe-per-class", "6",
                                     "--min-probe", "6", "--json"])  # the same scan, answered from its table
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["uninformative"] == result.uninformative
