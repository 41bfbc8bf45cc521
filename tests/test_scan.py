"""A real scan on a local Ray: ranking, caching, failures recorded without stopping the scan."""
import pyarrow.parquet as pq

from selkd_ray.config import ScanConfig


def test_scan_ranks_the_teacher_of_the_target_classes_first(scan_here, tiny_zoo, target_task, tmp_path):
    result = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(probe_per_class=20))
    assert [r.status for r in result.rows] == ["scored"] * 3
    assert result.rows[0].teacher_id == "own-classes"
    assert result.rows[-1].teacher_id in ("random", "digits-01")
    table = pq.read_table(result.scores_path)
    assert table.column("rank").to_pylist() == [1, 2, 3]
    assert all(f > 0 for f in table.column("flops").to_pylist())
    assert "x-three" in result.rows[0].label_plan

    again = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(probe_per_class=20))
    assert (again.ran, again.cached) == (0, 3)
    assert [r.teacher_id for r in again.rows] == [r.teacher_id for r in result.rows]
    assert [r.score for r in again.rows] == [r.score for r in result.rows]


def test_corrupt_checkpoint_is_recorded_and_the_scan_goes_on(scan_here, zoo_copy, target_task, tmp_path):
    (zoo_copy / "digits-01" / "model.safetensors").write_bytes(b"not a safetensors file")
    result = scan_here(zoo_copy, target_task, tmp_path, ScanConfig(probe_per_class=10))
    status = {r.teacher_id: r for r in result.rows}
    assert status["digits-01"].status == "failed"
    # found from the safetensors header when the zoo is indexed, so the scan never pays to run it
    assert "model.safetensors: not a readable safetensors file" in status["digits-01"].error
    assert status["digits-01"].flops == 0 and result.flops == sum(r.flops for r in result.rows)
    assert "\n" not in status["digits-01"].error
    assert status["own-classes"].status == "scored" and status["random"].status == "scored"
    assert result.rows[-1].teacher_id == "digits-01" and result.rows[-1].rank is None


def test_prototype_and_semantic_scorers_on_a_real_scan(scan_here, tiny_zoo, target_task, tmp_path):
    """Classifier rows travel through the cache; label names are embedded once by the packaged text model."""
    config = ScanConfig(scorers=("ot-prototype", "ot-semantic", "semantic", "ot"), probe_per_class=10)
    first = scan_here(tiny_zoo, target_task, tmp_path, config)
    (tmp_path / "scores.parquet").unlink()  # force the rescan through the prediction cache
    again = scan_here(tiny_zoo, target_task, tmp_path, config)
    assert again.cached == 3
    for before, after in zip(first.rows, again.rows):
        assert after.scores["ot-prototype"] == before.scores["ot-prototype"]  # classifier rows came from the cache
    scores = {r.teacher_id: r for r in first.rows}
    assert first.rows[0].teacher_id == "own-classes"
    # 'x-three' / 'x-five' / 'x-eight' name the target's classes; 'a' / 'b' name nothing
    assert scores["own-classes"].scores["semantic"] > scores["random"].scores["semantic"]
    assert scores["own-classes"].scores["ot-semantic"] > scores["random"].scores["ot-semantic"]
    assert len(list((tmp_path / "cache" / "classifiers").glob("*.parquet"))) == 3
    assert list((tmp_path / "cache").glob("label-embeddings-*.parquet"))


def test_a_rescan_with_a_new_scorer_scores_cached_predictions(scan_here, tiny_zoo, target_task, tmp_path):
    scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("leep",), probe_per_class=10))
    again = scan_here(tiny_zoo, target_task, tmp_path, ScanConfig(scorers=("leep", "nce"), probe_per_class=10))
    assert (again.ran, again.cached) == (0, 3)
    assert all(isinstance(row.scores["nce"], float) for row in again.rows)


def test_a_teacher_with_non_finite_outputs_is_recorded_and_skipped(scan_here, zoo_copy, target_task, tmp_path):
    from safetensors.torch import load_file, save_file

    weights_path = zoo_copy / "random" / "model.safetensors"
    weights = load_file(weights_path)
    weights = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, weights_path, metadata={"format": "pt"})
    result = scan_here(zoo_copy, target_task, tmp_path, ScanConfig(scorers=("leep",), probe_per_class=5))
    rows = {r.teacher_id: r for r in result.rows}
    assert rows["random"].status == "failed" and "non-finite outputs" in rows["random"].error
    assert rows["own-classes"].status == rows["digits-01"].status == "scored"
