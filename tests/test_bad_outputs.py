"""Every file the tool reads can be bad: an unreadable output table stops a command in one line before any
work, and is left as it was; an unreadable cache entry is a miss, recomputed and rewritten."""
import numpy as np
import pytest
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.config import ScanConfig
from selkd_ray.io.atomic import read_table

runner = CliRunner()
GARBAGE = b"PAR1 this is not a parquet file"


@pytest.mark.parametrize("table", ["scores.parquet", "history.parquet", "catalogue.parquet"])
def test_an_unreadable_output_table_stops_the_scan_before_any_work(table, tiny_zoo, task_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / table).write_bytes(GARBAGE)
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out / table}: not a readable Parquet table")
    assert "move it aside" in lines[0]
    assert (out / table).read_bytes() == GARBAGE  # left as it was
    assert not (out / "cache").exists()  # nothing ran


@pytest.mark.parametrize("command, table", [("history", "history.parquet"), ("report", "scores.parquet")])
def test_reading_commands_name_an_unreadable_table(command, table, tmp_path):
    (tmp_path / table).write_bytes(GARBAGE)
    result = runner.invoke(app, [command, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / table}: not a readable Parquet table (")
    assert lines[0].endswith("); move it aside (or delete it) and run again to start it afresh")
    assert (tmp_path / table).read_bytes() == GARBAGE


def test_an_unreadable_cache_entry_is_recomputed_and_rewritten(scan_here, tiny_zoo, target_task, tmp_path):
    config = ScanConfig(scorers=("leep",), probe_per_class=6)
    first = scan_here(tiny_zoo, target_task, tmp_path, config)
    entries = sorted(p for p in (tmp_path / "cache").glob("*.parquet") if not p.name.startswith("label-"))
    assert len(entries) == 3
    entries[0].write_bytes(GARBAGE)
    (tmp_path / "scores.parquet").unlink()  # the rescan then goes through the prediction cache
    again = scan_here(tiny_zoo, target_task, tmp_path, config)
    assert (again.ran, again.cached) == (1, 2)
    assert [r.score for r in again.rows] == [r.score for r in first.rows]
    assert read_table(entries[0]).num_rows == 18  # rewritten: 6 images x 3 classes


def test_a_swapped_or_edited_cache_entry_is_not_served(scan_here, tiny_zoo, target_task, tmp_path):
    """Entries carry their key and a checksum: another teacher's file under this name, or a file whose numbers
    were edited, is a miss (recomputed, rewritten, listed in the summary), never served as this teacher's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selkd_ray.reports.text import scan_summary

    config = ScanConfig(scorers=("leep",), probe_per_class=6)
    first = scan_here(tiny_zoo, target_task, tmp_path, config)
    entries = sorted(p for p in (tmp_path / "cache").glob("*.parquet") if not p.name.startswith("label-"))
    swapped, edited = entries[0], entries[1]
    swapped.write_bytes(entries[2].read_bytes())  # another teacher's predictions under this teacher's name
    table = pq.read_table(edited)
    probs = [[0.0] * len(row) for row in table.column("probs").to_pylist()]  # same metadata, other numbers
    pq.write_table(table.set_column(0, "probs", pa.array(probs, table.schema.field("probs").type)), edited)
    (tmp_path / "scores.parquet").unlink()
    again = scan_here(tiny_zoo, target_task, tmp_path, config)
    assert (again.ran, again.cached) == (2, 1)
    assert [r.score for r in again.rows] == [r.score for r in first.rows]
    reasons = dict(entry.rsplit(" (", 1) for entry in again.recomputed)
    assert reasons == {str(swapped): "its teacher_hash, teacher_config is not this entry's)",
                       str(edited): "its contents do not match their checksum)"}
    assert "2 bad cache entries recomputed and rewritten" in scan_summary(again)
    final = scan_here(tiny_zoo, target_task, tmp_path / "b", config, )  # a clean output: nothing to reject
    assert final.recomputed == ()


def test_a_swapped_classifier_entry_recomputes_the_teacher(scan_here, tiny_zoo, target_task, tmp_path):
    """The teacher's classifier rows have a cache file of their own: another teacher's rows under its name make
    the whole entry a miss (the teacher runs again and both files are rewritten), so a classifier-based score
    is never left NaN, or wrong, on every rescan."""
    config = ScanConfig(scorers=("leep", "ot-prototype"), probe_per_class=6)
    first = scan_here(tiny_zoo, target_task, tmp_path, config)
    classifiers = sorted((tmp_path / "cache" / "classifiers").glob("*.parquet"))
    assert len(classifiers) == 3
    own = classifiers[0].read_bytes()
    classifiers[0].write_bytes(classifiers[1].read_bytes())
    (tmp_path / "scores.parquet").unlink()
    again = scan_here(tiny_zoo, target_task, tmp_path, config)
    assert (again.ran, again.cached) == (1, 2)
    scores = lambda result: {r.teacher_id: r.scores for r in result.rows}  # noqa: E731
    assert scores(again) == scores(first) and all(np.isfinite(s["ot-prototype"]) for s in scores(again).values())
    (recomputed,) = again.recomputed
    assert recomputed.startswith(f"{classifiers[0]} (its teacher_hash") and "is not this entry's" in recomputed
    assert classifiers[0].read_bytes() == own  # rewritten
