"""bench/scan.py's scorers section in its --quick sizes: every teacher scorer timed against the forward pass it
scores, so the figures the README carries come from a script that still runs."""
import importlib.util
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scan.py"


def test_quick_scorers_section_times_every_teacher_scorer_against_its_forward_pass(ray_session, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_scan", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scan"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        figures = module.run(tmp_path, module.QUICK, ("scorers",))
    finally:
        del sys.modules["bench_scan"]
    from selkd_ray.scoring import SCORERS
    from selkd_ray.scoring.registry import TASK

    rows = pq.read_table(tmp_path / "scorers.parquet").to_pylist()
    expected = set(SCORERS.names()) - set(SCORERS.tagged(TASK))
    for teacher, width in module.SCORER_TEACHERS:
        timed = {r["scorer"]: r for r in rows if r["teacher"] == teacher}
        assert set(timed) == expected and all(r["width"] == width and r["probe"] == 15 for r in timed.values())
        assert all(math.isfinite(r["share"]) and r["seconds"] >= 0 and r["forward_seconds"] > 0
                   for r in timed.values())
    assert figures["scorers"]["worst"]["scorer"] in expected and "over_10_percent" in figures["scorers"]
    table = capsys.readouterr().out.split("scorer       ")[-1].splitlines()  # the README's table, as printed
    assert "512-d, 15 img" in table[0] and "2048-d, 15 img" in table[0] and table[1].startswith("forward pass")
    assert {line.split()[0] for line in table[2:2 + len(expected)]} == expected
    assert not (tmp_path / "tiny").exists()  # a section alone builds nothing the others need
