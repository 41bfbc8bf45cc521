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
