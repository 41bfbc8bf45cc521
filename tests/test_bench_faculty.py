"""bench/faculty.py --quick (issue 42): mnist's four specialists, one faculty target, every step of the faculty
benchmark run (the zoo, the references, the scan's and the coverage rule's mixtures, `select` with and without
--cover), beside the suite with its own Ray (helpers/background.py)."""
import re

import pytest
from helpers.background import finished

FACULTY = ("bench/faculty.py", "--quick", "--out", "{out}")


@pytest.mark.background("faculty", *FACULTY)
def test_quick_faculty_benchmark_prints_its_table_and_the_coverage_rules_line():
    done, out = finished("faculty", FACULTY)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout[-2000:], done.stderr[-3000:])
    text = done.stdout
    for name in ("label-only", "oracle single teacher", "top-2 mixture", "covering mixture",
                 "covering mixture, per-image weights", "select (defaults: --cover)", "select --no-cover"):
        assert re.search(rf"^{re.escape(name)} +[\d.]+ +\[[\d.]+, [\d.]+\] +\d/1$", text, flags=re.M), (name, text)
    # mnist-2479: no quick teacher knows its four classes, so the rule raced a mixture of two or three of them
    assert re.search(r"the coverage rule raced a mixture in 1 of 1 units, the race picked it in [01]; select cost "
                     r"[\d.]+x select --no-cover", text), text
    assert (out / "faculty_units_labels_20.parquet").is_file()


RANKING = ("bench/ranking.py", "--specialists", "--quick", "--out", "{out}")


@pytest.mark.background("ranking-specialists", *RANKING, lane="tests")
def test_quick_ranking_benchmark_on_the_specialist_zoo_ranks_every_scorer_on_faculty_targets():
    """Issue 42.4: the ranking benchmark on specialists (mnist's {0,1,2,3}, {4,5,6}, {7,8,9}, even digits) and
    two faculty targets, chosen on the selection half's one, reported on the held-out one."""
    import pyarrow.parquet as pq

    done, out = finished("ranking-specialists", RANKING)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout[-2000:], done.stderr[-3000:])
    truth = pq.read_table(out / "ground_truth.parquet").to_pylist()
    assert {(r["target"], r["teacher_id"]) for r in truth} == {
        (target, teacher) for target in ("mnist-0369", "mnist-2479")
        for teacher in ("mnist-0123", "mnist-456", "mnist-789", "mnist-even", "labels-only")}
    units = pq.read_table(out / "ranking_units.parquet").to_pylist()
    scored = {(r["target"], r["scorer"]) for r in units}
    for scorer in ("ot", "leep", "knn", "logme", "learned-loto"):
        assert {("mnist-0369", scorer), ("mnist-2479", scorer)} <= scored, scorer
    assert "default chosen on mnist-0369, sklearn-2479:" in done.stdout  # the faculty selection half
    assert re.search(r"^mnist-0369\* ", done.stdout, flags=re.M) and re.search(r"^mnist-2479  ", done.stdout, flags=re.M)
