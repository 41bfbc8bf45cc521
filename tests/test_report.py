"""The report a person reads: a ranking table and a plot."""
from selkd_ray.reports.plots import ranking_plot
from selkd_ray.reports.text import ranking_table
from selkd_ray.rows import ScoreRow

ROWS = [
    ScoreRow("good", "zoo/good", "test_resnet", "h1", "scored", rank=1, score=-0.1, scores={"ot": -0.1}),
    ScoreRow("weak", "zoo/weak", "test_resnet", "h2", "cached", rank=2, score=-0.3, scores={"ot": -0.3}),
    ScoreRow("broken", "zoo/broken", "", "h3", "failed", "zoo/broken: bad file"),
]


def test_table_lists_ranked_then_failed_teachers():
    lines = ranking_table(ROWS, ["ot"]).splitlines()
    assert lines[2].split()[:2] == ["1", "good"] and lines[3].split()[:2] == ["2", "weak"]
    assert "failed" in lines[4] and "zoo/broken: bad file" in lines[4]


def test_plot_is_a_png(tmp_path):
    path = ranking_plot(ROWS, "ot", tmp_path / "ranking.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
