"""The zoo catalogue: Parquet round trip, incremental indexing, bad teacher folders."""
import json
import os

from selkd_ray.api import index_zoo
from selkd_ray.io.catalogue import read_catalogue


def test_catalogue_round_trips_through_parquet(tiny_zoo, tmp_path):
    specs, path = index_zoo(tiny_zoo, tmp_path / "catalogue.parquet")
    assert sorted(s.teacher_id for s in specs) == ["digits-01", "own-classes", "random"]
    back = [spec for spec, _, _ in read_catalogue(path)]
    assert back == specs
    own = next(s for s in specs if s.teacher_id == "own-classes")
    assert own.label_names == ("x-three", "x-five", "x-eight")
    assert own.input_size == (1, 28, 28) and own.param_count > 0 and own.flops_per_sample > 0
    assert len(own.content_hash) == 64 and not own.error


def test_index_is_incremental(zoo_copy, tmp_path):
    catalogue = tmp_path / "catalogue.parquet"
    first, _ = index_zoo(zoo_copy, catalogue)
    weights = zoo_copy / "random" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # change one weight byte: a new teacher version
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(1, 1))
    second, _ = index_zoo(zoo_copy, catalogue)
    changed = {s.teacher_id for s in second} - {s.teacher_id for s in second if s in first}
    assert changed == {"random"}


def test_label_names_disagreeing_with_num_classes_is_named(zoo_copy, tmp_path):
    config_path = zoo_copy / "digits-01" / "config.json"
    config = json.loads(config_path.read_text())
    config["label_names"] = ["zero"]
    config_path.write_text(json.dumps(config))
    specs, _ = index_zoo(zoo_copy, tmp_path / "c.parquet")
    bad = next(s for s in specs if s.teacher_id == "digits-01")
    assert "config.json: label_names" in bad.error and "num_classes is 2" in bad.error


def test_missing_checkpoint_is_recorded(zoo_copy, tmp_path):
    (zoo_copy / "random" / "model.safetensors").unlink()
    specs, _ = index_zoo(zoo_copy, tmp_path / "c.parquet")
    bad = next(s for s in specs if s.teacher_id == "random")
    assert "model.safetensors: missing" in bad.error


def test_a_new_catalogue_starts_from_the_zoos_own(zoo_copy, tmp_path):
    """A scan's first catalogue reuses rows the zoo's catalogue already holds for unchanged weights files."""
    from dataclasses import replace

    from selkd_ray.api import index_zoo
    from selkd_ray.io.catalogue import read_catalogue, write_catalogue

    index_zoo(zoo_copy)
    entries = read_catalogue(zoo_copy / "catalogue.parquet")
    marked = [(replace(spec, flops_per_sample=12345), size, mtime) for spec, size, mtime in entries]
    write_catalogue(marked, zoo_copy / "catalogue.parquet")
    specs, _ = index_zoo(zoo_copy, tmp_path / "scan" / "catalogue.parquet")
    assert {spec.flops_per_sample for spec in specs} == {12345}  # reused, not described again
