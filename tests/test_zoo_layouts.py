"""Zoo layouts as teams keep them, each written by the library that writes it: nested folders, timm's
`pytorch_model.bin`, a Hugging Face cache, transformers classifiers, timm configs without label names."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from timm.models import save_for_hf
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.api import index_zoo
from selkd_ray.scoring.assessment import assess
from selkd_ray.training.student_data import teacher_spec
from selkd_ray.models.forward import ForwardPath, teacher_predictions
from selkd_ray.io.catalogue import read_catalogue
from selkd_ray.io.cache import prediction_key
from selkd_ray.records import Predictions, ProbeSet

CPU = torch.device("cpu")
IMAGES = np.random.default_rng(0).integers(0, 255, (6, 1, 28, 28), dtype=np.uint8)


def timm_folder(folder: Path, num_classes: int = 3, label_names: list[str] | None = None, safe: bool = True,
                seed: int = 0) -> Path:
    """A timm teacher as timm's own `save_for_hf` writes it (safetensors, or pytorch_model.bin)."""
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=num_classes, in_chans=1)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (1, 28, 28), "mean": (0.5,), "std": (0.25,)}
    config = {"label_names": label_names} if label_names is not None else None
    save_for_hf(model, str(folder), model_config=config, model_args={"in_chans": 1}, safe_serialization=safe)
    return folder


def test_nested_folders_at_any_depth_and_timms_bin_weights_are_teachers(tmp_path):
    zoo = tmp_path / "zoo"
    timm_folder(zoo / "vision-team" / "digits" / "small", label_names=["a", "b", "c"])
    timm_folder(zoo / "org" / "legacy", label_names=["x", "y", "z"], safe=False, seed=1)
    assert (zoo / "org" / "legacy" / "pytorch_model.bin").is_file()
    (zoo / "notes").mkdir()  # a folder of no teacher is not one
    (zoo / "shared").symlink_to(timm_folder(tmp_path / "storage" / "t", label_names=["a", "b", "c"], seed=2), target_is_directory=True)
    (zoo / "org" / "loop").symlink_to(zoo, target_is_directory=True)  # a link loop ends, walked once
    specs, _ = index_zoo(zoo)
    assert [s.teacher_id for s in specs] == ["org/legacy", "shared", "vision-team/digits/small"]
    again, _ = index_zoo(zoo)  # indexed or from the catalogue, teachers of one label space share one tuple
    assert specs[1].label_names is specs[2].label_names and again[1].label_names is again[2].label_names
    assert not any(s.error for s in specs)
    legacy = specs[0]
    probs = teacher_predictions(legacy, ForwardPath.for_teacher(legacy, CPU), IMAGES).probs
    own = timm.create_model("test_resnet", num_classes=3, in_chans=1).eval()
    own.load_state_dict(torch.load(zoo / "org" / "legacy" / "pytorch_model.bin", weights_only=True))
    with torch.no_grad():  # the saved weights, not a fresh initialisation
        expected = torch.softmax(own(ForwardPath(own, legacy.preprocessing, CPU).prepare(IMAGES)), 1).numpy()
    assert np.allclose(probs, expected, atol=1e-5)


def hf_cache_repo(cache: Path, repo_id: str, revisions: dict[str, Path], main: str) -> Path:
    """A model repo laid out as huggingface_hub's downloads leave it: files stored once under blobs/ by their
    hash, each revision a snapshots/<commit>/ folder of relative symlinks, refs/main naming a commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, source in revisions.items():
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file in sorted(source.iterdir()):
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.copyfile(file, blob)
            os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(main)
    return repo


def test_a_hugging_face_cache_is_a_zoo_whose_ids_are_repo_ids_at_mains_revision(tmp_path):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    old = timm_folder(tmp_path / "src-old", label_names=["old-a", "old-b", "old-c"])
    new = timm_folder(tmp_path / "src-new", label_names=["a", "b", "c"], seed=1)
    cache = tmp_path / "zoo" / "hub"
    main, earlier = "1" * 40, "0" * 40
    hf_cache_repo(cache, "team/digits-small", {earlier: old, main: new}, main)
    timm_folder(tmp_path / "zoo" / "local" / "plain", label_names=["p", "q", "r"], seed=2)
    # huggingface_hub reads it as its own cache
    assert [r.repo_id for r in scan_cache_dir(cache).repos] == ["team/digits-small"]
    assert Path(try_to_load_from_cache("team/digits-small", "config.json", cache_dir=cache)).parent.name == main

    specs, catalogue = index_zoo(tmp_path / "zoo")
    by_id = {s.teacher_id: s for s in specs}
    assert sorted(by_id) == ["local/plain", "team/digits-small"] and not any(s.error for s in specs)
    cached = by_id["team/digits-small"]
    assert cached.revision == main and cached.label_names == ("a", "b", "c")
    probs = teacher_predictions(cached, ForwardPath.for_teacher(cached, CPU), IMAGES).probs
    assert probs.shape == (6, 3)
    (again,), _ = index_zoo(cache, tmp_path / "c2.parquet")  # the cache folder itself as the zoo
    assert again.teacher_id == "team/digits-small" and again.revision == main
    given = teacher_spec(cache / "models--team--digits-small")  # `distill --teacher` of a cache repo
    assert (given.teacher_id, given.revision, given.content_hash) == (cached.teacher_id, main, cached.content_hash)


def test_cache_repos_huggingface_hub_cannot_read_are_said_not_dropped(tmp_path):
    """A repo whose refs/main names a revision that is not there is one invalid teacher with huggingface_hub's
    reason; a plain teacher folder that happens to be named `models--acme--parity` is a teacher."""
    source = timm_folder(tmp_path / "src", label_names=["a", "b", "c"])
    cache = tmp_path / "zoo" / "hub"
    hf_cache_repo(cache, "team/fine", {"1" * 40: source}, "1" * 40)
    hf_cache_repo(cache, "team/broken", {"1" * 40: source}, "2" * 40)  # main names a revision never downloaded
    shutil.copytree(source, cache / "models--acme--parity")
    specs, _ = index_zoo(tmp_path / "zoo")
    by_id = {s.teacher_id: s for s in specs}
    assert sorted(by_id) == ["hub/models--acme--parity", "team/broken", "team/fine"]
    assert not by_id["team/fine"].error and not by_id["hub/models--acme--parity"].error
    assert by_id["hub/models--acme--parity"].label_names == ("a", "b", "c")
    assert by_id["team/broken"].error == (
        f"{cache / 'models--team--broken'}: Reference(s) refer to missing commit hashes: {{'{'2' * 40}': "
        "{'main'}} (huggingface_hub's CorruptedCacheException); the repo is left out")
    result = CliRunner().invoke(app, ["zoo", "index", str(tmp_path / "zoo"), "--out", str(tmp_path / "c.parquet")])
    assert result.exit_code == 1 and "models--team--broken: Reference(s) refer to missing commit" in result.output


def test_a_moved_teacher_keeps_its_id_and_a_changed_config_is_a_new_cache_key(tmp_path):
    zoo = tmp_path / "zoo"
    timm_folder(zoo / "alpha", label_names=["a", "b", "c"])
    timm_folder(zoo / "beta", label_names=["a", "b", "c"], seed=1)
    catalogue = tmp_path / "catalogue.parquet"
    first, _ = index_zoo(zoo, catalogue)
    (zoo / "archive").mkdir()
    shutil.move(zoo / "alpha", zoo / "archive" / "alpha")
    moved, _ = index_zoo(zoo, catalogue)
    assert sorted(s.teacher_id for s in moved) == ["alpha", "beta"]
    assert {s.teacher_id: s.content_hash for s in moved} == {s.teacher_id: s.content_hash for s in first}
    assert next(s for s in moved if s.teacher_id == "alpha").path.endswith("archive/alpha")
    # without the catalogue that knew it, the id is its place
    fresh, _ = index_zoo(zoo, tmp_path / "other.parquet")
    assert sorted(s.teacher_id for s in fresh) == ["archive/alpha", "beta"]

    config = zoo / "beta" / "config.json"
    data = json.loads(config.read_text())
    data["label_names"] = ["c", "b", "a"]  # same weights, other names: other predictions' meaning
    config.write_text(json.dumps(data))
    renamed, _ = index_zoo(zoo, catalogue)
    before = next(s for s in moved if s.teacher_id == "beta")
    after = next(s for s in renamed if s.teacher_id == "beta")
    probe = ProbeSet(IMAGES, np.zeros(6, int), ("a", "b"), "probe")
    assert before.content_hash != after.content_hash
    assert prediction_key(before, probe) != prediction_key(after, probe)


def test_timm_configs_without_label_names(tmp_path):
    """1,000 classes: ImageNet's names from timm's class table; 7: a warning, and the label-name scorers
    leave the teacher out rather than score it on '0'..'6'."""
    zoo = tmp_path / "zoo"
    timm_folder(zoo / "imagenet-head", num_classes=1000)
    timm_folder(zoo / "unnamed", num_classes=7)
    timm_folder(zoo / "named", num_classes=3, label_names=["three", "five", "eight"])
    specs, _ = index_zoo(zoo)
    by_id = {s.teacher_id: s for s in specs}
    assert by_id["imagenet-head"].label_names[:2] == ("tench", "goldfish") and by_id["imagenet-head"].label_names_known
    unnamed = by_id["unnamed"]
    assert not unnamed.label_names_known and unnamed.label_names == tuple(map(str, range(7)))
    assert "unnamed" in unnamed.warning and "leave it out" in unnamed.warning
    assert not by_id["named"].warning

    names = {"three", "five", "eight", *unnamed.label_names}
    vectors = {n: np.eye(16)[i] for i, n in enumerate(sorted(names))}
    probe = ProbeSet(IMAGES, np.array([0, 1, 2, 0, 1, 2]), ("three", "five", "eight"), "p")
    rng = np.random.default_rng(0)
    for spec, expect_score in ((by_id["named"], True), (unnamed, False)):
        probs = rng.dirichlet(np.ones(spec.num_classes), 6).astype(np.float32)
        scores = assess(spec, Predictions(probs, rng.normal(size=(6, 4))), probe, ["semantic", "ot-semantic", "nce"],
                        vectors).scores
        assert np.isfinite(scores["nce"])
        assert np.isfinite(scores["semantic"]) == expect_score and np.isfinite(scores["ot-semantic"]) == expect_score

    result = CliRunner().invoke(app, ["zoo", "index", str(zoo)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "unnamed" in warnings[0], result.output


def transformers_zoo(zoo: Path) -> dict[str, torch.nn.Module]:
    """A ViT saved by `save_pretrained` with its image processor, and a ResNet whose weights are a
    `pytorch_model.bin` written by torch.save."""
    from transformers import (ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification,
                              ViTImageProcessor)

    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, id2label={0: "three", 1: "five", 2: "eight"}, label2id={"three": 0, "five": 1, "eight": 2}))
    vit.save_pretrained(zoo / "hf" / "vit-digits")
    ViTImageProcessor(size={"height": 32, "width": 32}, resample=3).save_pretrained(zoo / "hf" / "vit-digits")
    resnet = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                       num_labels=4))
    resnet.config.save_pretrained(zoo / "hf" / "resnet-bin")
    torch.save(resnet.state_dict(), zoo / "hf" / "resnet-bin" / "pytorch_model.bin")
    return {"hf/vit-digits": vit.eval(), "hf/resnet-bin": resnet.eval()}


def test_transformers_image_classifiers_run_through_the_one_forward_path(tmp_path):
    models = transformers_zoo(tmp_path / "zoo")
    specs, _ = index_zoo(tmp_path / "zoo")
    by_id = {s.teacher_id: s for s in specs}
    assert sorted(by_id) == sorted(models) and not any(s.error for s in specs), [s.error for s in specs]
    vit, resnet = by_id["hf/vit-digits"], by_id["hf/resnet-bin"]
    assert vit.library == "transformers" and vit.label_names == ("three", "five", "eight")
    assert vit.input_size == (3, 32, 32) and vit.mean == (0.5, 0.5, 0.5) and vit.interpolation == "bicubic"
    assert vit.flops_per_sample > 0 and vit.param_count == sum(p.numel() for p in models["hf/vit-digits"].parameters())
    assert not resnet.label_names_known and resnet.warning  # LABEL_0..LABEL_3: transformers' stand-ins
    for spec in (vit, resnet):
        forward = ForwardPath.for_teacher(spec, CPU)
        logits, features = forward.outputs(IMAGES)
        with torch.no_grad():
            own = models[spec.teacher_id](pixel_values=forward.prepare(IMAGES)).logits.numpy()
        assert np.allclose(logits, own, atol=1e-5)  # the model's own logits, through our forward path
        rows = forward.classifier_rows()
        assert rows is not None and rows.shape == (spec.num_classes, features.shape[1])
        head = models[spec.teacher_id].classifier
        linear = head[-1] if isinstance(head, torch.nn.Sequential) else head
        assert np.allclose(features @ rows.T + linear.bias.detach().numpy(), logits, atol=1e-4)


def test_transformers_weights_that_cannot_be_its_own_are_found_when_indexed(tmp_path):
    """As a timm folder's: a zero-byte weights file, or another model's weights beside this config, is an
    invalid teacher at `zoo index`, naming the file, and the other teachers are indexed."""
    zoo = tmp_path / "zoo"
    transformers_zoo(zoo)
    shutil.copytree(zoo / "hf" / "vit-digits", zoo / "hf" / "empty")
    (zoo / "hf" / "empty" / "model.safetensors").write_bytes(b"")
    shutil.copytree(zoo / "hf" / "vit-digits", zoo / "hf" / "swapped")
    (zoo / "hf" / "swapped" / "model.safetensors").unlink()
    shutil.copy(zoo / "hf" / "resnet-bin" / "pytorch_model.bin", zoo / "hf" / "swapped" / "pytorch_model.bin")
    by_id = {s.teacher_id: s for s in index_zoo(zoo)[0]}
    assert not by_id["hf/vit-digits"].error and not by_id["hf/resnet-bin"].error
    assert by_id["hf/empty"].error.startswith(f"{zoo / 'hf' / 'empty' / 'model.safetensors'}: not a readable "
                                              "safetensors file")
    assert by_id["hf/swapped"].error.startswith(f"{zoo / 'hf' / 'swapped' / 'pytorch_model.bin'}: does not fit "
                                                "ViTForImageClassification as configured: it holds ")
    result = CliRunner().invoke(app, ["zoo", "index", str(zoo), "--out", str(tmp_path / "c.parquet")])
    assert result.exit_code == 1 and "2 invalid" in result.output, result.output


def test_a_transformers_teacher_without_the_hf_extra_is_one_line_and_the_zoo_goes_on(tmp_path, monkeypatch):
    transformers_zoo(tmp_path / "zoo")
    timm_folder(tmp_path / "zoo" / "timm-teacher", label_names=["a", "b", "c"])
    for name in [m for m in sys.modules if m == "transformers" or m.startswith("transformers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    result = CliRunner().invoke(app, ["zoo", "index", str(tmp_path / "zoo")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("pip install -e '.[hf]'" in e for e in errors), result.output
    assert any("hf/vit-digits/config.json" in e for e in errors) and any("hf/resnet-bin/config.json" in e for e in errors)
    assert "1 teachers indexed, 2 invalid" in result.output and "Traceback" not in result.output


def test_a_zoo_of_every_layout_is_scanned_by_the_runner_actors(scan_here, target_task, tmp_path):
    """Nested timm folders, a Hugging Face cache and transformers classifiers in one zoo, run by Ray actors;
    the unnamed teacher is ranked, said once, and left out of the label-name scores."""
    from selkd_ray.config import ScanConfig

    zoo = tmp_path / "zoo"
    transformers_zoo(zoo)
    timm_folder(zoo / "team" / "named", label_names=["three", "five", "eight"])
    hf_cache_repo(zoo / "hub", "org/cached", {"2" * 40: timm_folder(tmp_path / "src", num_classes=7)}, "2" * 40)
    events = []
    result = scan_here(zoo, target_task, tmp_path / "out", ScanConfig(scorers=("leep", "ot-semantic"), probe_per_class=4),
                  progress=events.append)
    rows = {row.teacher_id: row for row in result.rows}
    assert sorted(rows) == ["hf/resnet-bin", "hf/vit-digits", "org/cached", "team/named"]
    assert result.failed == 0 and all(row.rank is not None for row in rows.values())
    warned = [e.teacher_id for e in events if e.kind == "note" and "warning:" in e.message]
    assert sorted(warned) == ["hf/resnet-bin", "org/cached"]
    assert np.isnan(rows["org/cached"].scores["ot-semantic"]) and np.isfinite(rows["team/named"].scores["ot-semantic"])
    # `distill --scan` finds a nested teacher's cost matrix by its folder (its id is not the folder's name)
    from selkd_ray.plans.inputs import cost_from_scan

    assert cost_from_scan(result.scores_path, zoo / "team" / "named", target_task.num_classes).shape == (3, 3)


def test_many_new_teachers_are_indexed_by_ray_tasks_and_an_unchanged_zoo_builds_no_model(ray_session, tmp_path):
    """The same entries from Ray Data as from this process (ids, hashes, FLOPs); a second index of the
    unchanged zoo hands no teacher to the indexer (no model is built), a touched one hands that one."""
    import selkd_ray.zoo.index as zoo_module
    from selkd_ray.distributed.indexing import index_in_tasks
    from selkd_ray.zoo.layout import find_teachers

    zoo = tmp_path / "zoo"
    source = timm_folder(tmp_path / "source", label_names=["a", "b", "c"])
    for group in range(4):
        for index in range(4):
            shutil.copytree(source, zoo / f"group-{group}" / f"t{index}")
    found = find_teachers(zoo)
    here = zoo_module.index_here(found)
    assert index_in_tasks(found) == here and not any(spec.error for spec, _, _ in here)

    events = []
    specs, _ = index_zoo(zoo, tmp_path / "catalogue.parquet", progress=events.append)
    assert specs == [spec for spec, _, _ in here]
    assert (events[-1].stage, events[-1].done, events[-1].total) == ("zoo", 16, 16)  # 16 new: on Ray Data
    handed: list[list[str]] = []

    def indexer(folders):
        handed.append([f.teacher_id for f in folders])
        return zoo_module.index_here(folders)

    previous = read_catalogue(tmp_path / "catalogue.parquet")
    assert [spec for spec, _, _ in zoo_module.index_folders(zoo, previous, indexer)] == specs and len(specs) == 16
    (zoo / "group-0" / "t0" / "config.json").touch()  # one changed teacher is described again
    zoo_module.index_folders(zoo, previous, indexer)
    assert handed == [[], ["group-0/t0"]]


def test_an_older_integer_processor_size_is_read_as_transformers_reads_it(tmp_path):
    import json

    from transformers import AutoImageProcessor

    transformers_zoo(tmp_path / "zoo")
    folder = tmp_path / "zoo" / "hf" / "vit-digits"
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**processor, "size": 32}))
    assert AutoImageProcessor.from_pretrained(folder, local_files_only=True).size == {"height": 32, "width": 32}
    by_id = {s.teacher_id: s for s in index_zoo(tmp_path / "zoo")[0]}
    assert by_id["hf/vit-digits"].input_size == (3, 32, 32) and not by_id["hf/vit-digits"].error
    (folder / "preprocessor_config.json").write_text(json.dumps({**processor, "size": "big"}))
    spec = {s.teacher_id: s for s in index_zoo(tmp_path / "zoo")[0]}["hf/vit-digits"]
    assert spec.error.startswith(f"{folder / 'preprocessor_config.json'}: expected sizes as integers"), spec.error
