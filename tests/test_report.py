"""The report a person reads: a ranking table and a plot."""
from selkd_ray.reports.plots import ranking_plot, ranking_table

ROWS = [
    {"rank": 1, "teacher_id": "good", "architecture": "test_resnet", "status": "scored", "score": -0.1, "score_ot": -0.1},
    {"rank": 2, "teacher_id": "weak", "architecture": "test_resnet", "status": "cached", "score": -0.3, "score_ot": -0.3},
    {"rank": None, "teacher_id": "broken", "architecture": "", "status": "failed", "error": "zoo/broken: bad file"},
]


def test_table_lists_ranked_then_failed_teachers():
    lines = ranking_table(ROWS, ["ot"]).splitlines()
    assert lines[2].split()[:2] == ["1", "good"] and lines[3].split()[:2] == ["2", "weak"]
    assert "failed" in lines[4] and "zoo/broken: bad file" in lines[4]


def test_plot_is_a_png(tmp_path):
    path = ranking_plot(ROWS, "ot", tmp_path / "ranking.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
