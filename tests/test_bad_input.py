"""The bad-input suite: a hostile user's task files, zoos, options and output folders, one case each.

Every case asserts the exit code, the single `error:` line naming the file or field and what was expected, and
that the output folder's earlier contents are byte for byte as they were. They all fail before Ray starts, so
the suite costs seconds. (Faults that need a running scan, such as bad cache entries, are in test_bad_outputs.)
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.io.results import write_scores

runner = CliRunner()
GARBAGE = b"PAR1 not parquet at all"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes: what 'left as it was' means here."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {}


def earlier_output(tmp_path: Path) -> Path:
    """An output folder holding an earlier run's file, which no failed command may touch."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier run's output\n")
    return out


def one_error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0][len("error: "):]


# ---------------------------------------------------------------------------------------------------------
# Task files: every way a task table or ImageFolder tree can be wrong.

def rewrite(task_path: Path, out: Path, table: pa.Table | None = None, names=None, drop_names: bool = False,
            raw_names: bytes | None = None) -> Path:
    """The good task with its table or its label-names metadata replaced."""
    table = table if table is not None else pq.read_table(task_path)
    metadata = dict(pq.read_table(task_path).schema.metadata)
    if drop_names:
        metadata.pop(b"selkd.label_names")
    if names is not None:
        metadata[b"selkd.label_names"] = json.dumps(names).encode()
    if raw_names is not None:
        metadata[b"selkd.label_names"] = raw_names
    pq.write_table(table.replace_schema_metadata(metadata), out)
    return out


def with_column(task_path: Path, name: str, values, kind=None) -> pa.Table:
    table = pq.read_table(task_path)
    return table.set_column(table.column_names.index(name), name, pa.array(values, kind))


def labels(task_path: Path) -> list:
    return pq.read_table(task_path).column("label").to_pylist()


def splits(task_path: Path) -> list:
    return pq.read_table(task_path).column("split").to_pylist()


def first(values: list, wanted) -> int:
    return next(i for i, v in enumerate(values) if v == wanted)


def png(size: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(root: Path, sizes=(8, 8), corrupt: bool = False, train: bool = True,
                 val_only: str = "", both_val: bool = False) -> Path:
    for index, name in enumerate(("a", "b")):
        folder = root / ("train" if train else "val") / name
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(b"not a png" if corrupt and index == 1 else png(sizes[index]))
    if val_only:  # a class with validation images and no train folder
        (root / "validation" / val_only).mkdir(parents=True)
        (root / "validation" / val_only / "0.png").write_bytes(png(8))
    if both_val:
        for split in ("val", "validation"):
            (root / split / "a").mkdir(parents=True)
            (root / split / "a" / "0.png").write_bytes(png(8))
    return root


def t_missing(p, d):
    return d / "no-such-task.parquet"


def t_garbage(p, d):
    (d / "t.parquet").write_bytes(GARBAGE)
    return d / "t.parquet"


def t_empty_file(p, d):
    (d / "t.parquet").write_bytes(b"")
    return d / "t.parquet"


def t_drop(column):
    def make(p, d):
        return rewrite(p, d / "t.parquet", pq.read_table(p).drop([column]))
    return make


def t_names(names=None, raw=None, drop=False):
    def make(p, d):
        return rewrite(p, d / "t.parquet", names=names, raw_names=raw, drop_names=drop)
    return make


def t_labels(change, kind=None):
    def make(p, d):
        return rewrite(p, d / "t.parquet", with_column(p, "label", change(labels(p)), kind))
    return make


def t_splits(change):
    def make(p, d):
        return rewrite(p, d / "t.parquet", with_column(p, "split", change(splits(p))))
    return make


def replaced(index_of, value):
    def change(values):
        values = list(values)
        values[index_of(values)] = value
        return values
    return change


def only_train_of_class_zero_unlabelled(values):
    return values  # (used with splits below)


def t_no_train_of_class(p, d):
    lab, spl = labels(p), splits(p)
    spl = ["val" if (label == 0 and split == "train") else split for label, split in zip(lab, spl)]
    return rewrite(p, d / "t.parquet", with_column(p, "split", spl))


def t_empty_table(p, d):
    return rewrite(p, d / "t.parquet", pq.read_table(p).slice(0, 0))


def t_folder(**kwargs):
    def make(p, d):
        return image_folder(d / "folder", **kwargs)
    return make


def t_not_a_table_dir(p, d):
    (d / "folder").mkdir()
    return d / "folder"


TASKS = [
    ("missing file", t_missing, "no such file; expected a task Parquet table or an ImageFolder tree"),
    ("not parquet", t_garbage, "not a Parquet table"),
    ("empty file", t_empty_file, "not a Parquet table"),
    ("no image column", t_drop("image"), "missing column 'image'"),
    ("no label column", t_drop("label"), "missing column 'label'"),
    ("no split column", t_drop("split"), "missing column 'split'"),
    ("no label names", t_names(drop=True), "label_names: missing from the table's metadata"),
    ("label names not JSON", t_names(raw=b"three, five, eight"), "label_names: not JSON"),
    ("label names a string", t_names(names="three"), "label_names: expected a JSON list of unique non-empty strings"),
    ("label names numbers", t_names(names=[3, 5, 8]), "label_names: expected a JSON list of unique non-empty strings"),
    ("label names an object", t_names(names={"a": 1}), "label_names: expected a JSON list of unique non-empty strings"),
    ("label names with an empty one", t_names(names=["three", "", "eight"]), "label_names: expected a JSON list of unique non-empty strings"),
    ("label names repeated", t_names(names=["three", "three", "eight"]), "label_names: expected unique names"),
    ("one label name", t_names(names=["three"]), "label_names: expected at least two classes, got 1"),
    ("too few label names", t_names(names=["three", "five"]), "label: value 2 at row"),
    ("float label", t_labels(replaced(lambda v: first(v, 1), 1.5), pa.float64()), "is not a whole number"),
    ("negative label", t_labels(replaced(lambda v: first(v, 1), -3)), "is negative"),
    ("label out of range", t_labels(replaced(lambda v: first(v, 1), 7)), "label: value 7 at row"),
    ("string labels", t_labels(lambda v: [None if x is None else str(x) for x in v], pa.string()), "expected integer class indices"),
    ("train row unlabelled", t_labels(replaced(lambda v: 0, None)), "expected a label on every train/val/test row"),
    ("unknown split", t_splits(replaced(lambda v: 0, "dev")), "unknown split 'dev'"),
    ("null split", t_splits(replaced(lambda v: 0, None)), "split: value None at row 0"),
    ("class without train images", t_no_train_of_class, "has no labelled train example"),
    ("no rows", t_empty_table, "has no labelled train example"),
    ("folder without train/", t_not_a_table_dir, "expected an ImageFolder tree with a train/ folder"),
    # a class whose only image is unreadable: that image is left out, and the class has no train example left
    ("folder with a corrupt image", t_folder(corrupt=True), "has no labelled train example (1 image left out: "),
    ("folder with only val/", t_folder(train=False), "expected an ImageFolder tree with a train/ folder"),
    # a class with images in validation/ (read as val) but none in train/: named, not dropped
    ("folder class only in validation/", t_folder(val_only="c"), "class 'c' has no labelled train example"),
    ("folder with val/ and validation/", t_folder(both_val=True), "validation: a second val split beside val/"),
]


@pytest.mark.parametrize("make, expected", [c[1:] for c in TASKS], ids=[c[0] for c in TASKS])
def test_a_bad_task_is_one_line_naming_it(make, expected, tiny_zoo, task_path, tmp_path):
    out = earlier_output(tmp_path)
    before = snapshot(out)
    bad = make(task_path, tmp_path)
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(bad), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = one_error_line(result)
    assert message.startswith(str(bad)) and expected in message, message
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------
# Zoos: a teacher folder broken in each way is one error line in `zoo index` (exit 1) naming its file; the
# others are indexed. A zoo that is not a zoo is one line, exit 2, for `zoo index` and `scan` alike.

def z_config(change):
    def make(zoo):
        path = zoo / "own-classes" / "config.json"
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))
        return path
    return make


def z_write(name: str, data: bytes):
    def make(zoo):
        (zoo / "own-classes" / name).write_bytes(data)
        return zoo / "own-classes" / name
    return make


def z_remove(name: str):
    def make(zoo):
        (zoo / "own-classes" / name).unlink()
        return zoo / "own-classes" / name
    return make


def z_truncate(zoo):
    path = zoo / "own-classes" / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def z_other_weights(zoo):
    """Another architecture's weights under this teacher's config (test_efficientnet into test_resnet)."""
    path = zoo / "own-classes" / "model.safetensors"
    shutil.copy(zoo / "digits-01" / "model.safetensors", path)
    return path


def z_other_head(zoo):
    """Same architecture, another label count: the head's shape gives it away (random has 2 classes)."""
    path = zoo / "own-classes" / "model.safetensors"
    shutil.copy(zoo / "random" / "model.safetensors", path)
    return path


ZOO_TEACHERS = [
    ("config not JSON", z_write("config.json", b"{architecture: "), "config.json", "not valid JSON"),
    ("config empty", z_write("config.json", b""), "config.json", "not valid JSON"),
    ("config a list", z_write("config.json", b"[1, 2]"), "config.json", "expected"),
    ("config without architecture", z_config(lambda c: c.pop("architecture")), "config.json", "architecture"),
    ("config of an unknown architecture", z_config(lambda c: c.update(architecture="no_such_net")), "config.json", "no_such_net"),
    ("label names disagree with num_classes", z_config(lambda c: c.update(num_classes=4)), "config.json", "num_classes is 4"),
    ("label names not a list", z_config(lambda c: c.update(label_names="abc")), "config.json", "label_names"),
    # fields of the wrong type: the teacher is invalid in one line, the index goes on
    ("pretrained_cfg a string", z_config(lambda c: c.update(pretrained_cfg="abc")), "config.json",
     "pretrained_cfg: expected an object of data settings, got 'abc'"),
    ("input_size with a word", z_config(lambda c: c["pretrained_cfg"].update(input_size=[1, "x", 28])),
     "config.json", "pretrained_cfg.input_size: expected [channels (1 or 3), height, width] as positive integers"),
    ("input_size of zeros", z_config(lambda c: c["pretrained_cfg"].update(input_size=[1, 0, 0])), "config.json",
     "got [1, 0, 0]"),
    ("label names a mapping of words", z_config(lambda c: c.update(label_names={"a": 1, "b": 2, "c": 3})),
     "config.json", "label_names: expected class indices 0..2 as keys"),
    ("mean a word", z_config(lambda c: c["pretrained_cfg"].update(mean="grey")), "config.json",
     "pretrained_cfg.mean: expected 1 finite number(s), one per channel, got 'grey'"),
    ("std of zero", z_config(lambda c: c["pretrained_cfg"].update(std=[0])), "config.json",
     "pretrained_cfg.std: expected 1 finite number(s), one per channel (each > 0), got [0]"),
    ("weights missing", z_remove("model.safetensors"), "model.safetensors", "missing"),
    ("unknown layout (no config.json)", z_remove("config.json"), "config.json", "unknown teacher layout"),
    ("weights garbage", z_write("model.safetensors", b"\x00" * 64), "model.safetensors", "not a readable safetensors file"),
    ("weights empty", z_write("model.safetensors", b""), "model.safetensors", "not a readable safetensors file"),
    ("weights truncated", z_truncate, "model.safetensors", "not a readable safetensors file"),
    ("weights of another architecture", z_other_weights, "model.safetensors", "does not fit"),
    ("weights with another head", z_other_head, "model.safetensors", "does not fit"),
]


@pytest.mark.parametrize("make, filename, expected", [c[1:] for c in ZOO_TEACHERS], ids=[c[0] for c in ZOO_TEACHERS])
def test_a_broken_teacher_is_one_error_line_in_zoo_index(make, filename, expected, zoo_copy):
    broken = make(zoo_copy)
    result = runner.invoke(app, ["zoo", "index", str(zoo_copy)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert f"own-classes/{filename}" in errors[0] and expected in errors[0], errors[0]
    assert "2 teachers indexed, 1 invalid" in result.output
    assert str(broken).endswith(filename)


def no_zoo(tmp_path):
    return tmp_path / "no-such-zoo"


def zoo_a_file(tmp_path):
    (tmp_path / "zoo").write_text("not a folder")
    return tmp_path / "zoo"


def empty_zoo(tmp_path):
    (tmp_path / "zoo" / "notes").mkdir(parents=True)
    return tmp_path / "zoo"


ZOOS = [("missing zoo", no_zoo, "not a folder; expected a zoo folder"),
        ("zoo is a file", zoo_a_file, "not a folder; expected a zoo folder"),
        ("empty zoo", empty_zoo, "no teacher folders")]


@pytest.mark.parametrize("command", ["zoo index", "scan"])
@pytest.mark.parametrize("make, expected", [c[1:] for c in ZOOS], ids=[c[0] for c in ZOOS])
def test_a_zoo_that_is_not_a_zoo_is_one_line(make, expected, command, task_path, tmp_path):
    zoo = make(tmp_path)
    out = earlier_output(tmp_path)
    before = snapshot(out)
    args = ["zoo", "index", str(zoo)] if command == "zoo index" else [
        "scan", "--zoo", str(zoo), "--task", str(task_path), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = one_error_line(result)
    assert message.startswith(str(zoo)) and expected in message, message
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------
# Options: every value that means nothing is refused before Ray starts, naming the flag (zero or negative
# counts once fell back to other values without a word).

OPTIONS = [
    (["scan", "--eta", "0"], "--eta: expected a value >= 2, got 0"),
    (["scan", "--min-probe", "0"], "--min-probe: expected a value >= 2, got 0"),
    (["scan", "--max-actors", "0"], "--max-actors: expected a value >= 1, got 0"),
    (["scan", "--probe-per-class", "-1"], "--probe-per-class: expected a value >= 2, got -1"),
    (["distill", "--epochs", "0"], "--epochs: expected a value >= 1, got 0"),
    (["distill", "--workers", "0"], "--gpus / --workers: expected --gpus >= 0 and --workers >= 1, got 0 and 0"),
    (["distill", "--gpus", "-1"], "--gpus / --workers: expected --gpus >= 0 and --workers >= 1, got -1 and 1"),
    (["distill", "--gpus", "2", "--workers", "3"], "--workers 3 with --gpus 2: each GPU runs one worker; give one of them"),
    (["distill", "--tau", "0"], "--tau: expected a value > 0, got 0"),
    (["select", "--shortlist", "0"], "--shortlist: expected a value >= 1, got 0"),
    (["select", "--race-epochs", "0"], "--race-epochs: expected a value >= 1, got 0"),
    (["select", "--trials-per-gpu", "0"], "--trials-per-gpu: expected a value >= 1, got 0"),
    (["select", "--epochs", "0"], "--epochs: expected a value >= 1, got 0"),
    (["scan", "--scorer", "nosuch"], "--scorer: unknown scorer 'nosuch'"),
    (["scan", "--budget", "plenty"], "--budget: 'plenty' is not a budget"),
    (["scan", "--budget", "0"], "--budget"),
    (["scan", "--budget", "-5"], "--budget"),
    (["scan", "--budget", "5parsecs"], "--budget: '5parsecs' is not a budget"),
    (["scan", "--probe-per-class", "1"], "--probe-per-class: expected a value >= 2, got 1"),
    (["scan", "--eta", "1"], "--eta: expected a value >= 2, got 1"),
    (["scan", "--max-actors", "-2"], "--max-actors: expected a value >= 1, got -2"),
    (["scan", "--min-probe", "1"], "--min-probe: expected a value >= 2, got 1"),
    (["scan", "--address", "no-port-here"], "--address: 'no-port-here' is not host:port"),
    (["scan", "--address", "127.0.0.1:9"], "--address: no Ray cluster answers at 127.0.0.1:9"),
    (["distill", "--loss", "nosuch"], "--loss: 'nosuch' is not one of"),
    (["distill", "--student", "no_such_net"], "--student: 'no_such_net'"),
    (["distill", "--lambda", "-1"], "--lambda: expected a value >= 0, got -1"),
    (["distill", "--eps", "0"], "--eps: expected a value > 0, got 0"),
    (["distill", "--patience", "0"], "--patience: expected a value >= 1, got 0"),
    (["distill", "--max-flops", "-1"], "--max-flops: expected a value > 0, got -1"),
    (["distill", "--teacher", "NOWHERE"], "NOWHERE"),
    (["distill", "--teacher", "ZOO/own-classes", "--scan", "NOWHERE/scores.parquet"],
     "--scan: NOWHERE/scores.parquet is not a file; expected the scores.parquet a scan wrote"),
    (["distill", "--teacher", "ZOO/own-classes", "--cache", "NOWHERE/cache"],
     "--cache: NOWHERE/cache is not a folder; expected a prediction cache"),
    (["distill", "--teacher", "ZOO/own-classes", "--cache", "ZOO/own-classes/config.json"],
     "/own-classes/config.json is not a folder; expected a prediction cache"),
    (["distill", "--teacher", "ZOO/own-classes", "--scan", "ZOO/own-classes/config.json"], "not a readable Parquet table"),
    (["select", "--lambda-grid", "a,b"], "--lambda-grid"),
    (["select", "--lambda-grid", "-1"], "--lambda-grid: expected non-negative numbers"),
    (["select", "--guard-z", "-1"], "--guard-z: expected a value >= 0, got -1"),
    (["select", "--budget", "plenty"], "--budget: 'plenty' is not a budget"),
    (["select", "--scorer", "nosuch"], "--scorer: unknown scorer 'nosuch'"),
    (["select", "--probe-per-class", "0"], "--probe-per-class: expected a value >= 2, got 0"),
    # NaN compares false with every bound: each float option refuses it (and infinity) by name
    (["distill", "--lambda", "nan"], "--lambda: expected a finite number, got nan"),
    (["distill", "--tau", "nan"], "--tau: expected a finite number, got nan"),
    (["distill", "--eps", "inf"], "--eps: expected a finite number, got inf"),
    (["distill", "--max-flops", "nan"], "--max-flops: expected a finite number, got nan"),
    (["select", "--guard-z", "nan"], "--guard-z: expected a finite number, got nan"),
    (["select", "--lambda-grid", "1,nan"], "--lambda-grid: expected non-negative numbers, got '1,nan'"),
    (["scan", "--budget", "1e999"], "--budget: expected a finite amount, got '1e999'"),
    (["select", "--teacher", "nosuch"], "--teacher: 'nosuch' is not a teacher of"),
    (["scan", "--address", "ray://127.0.0.1:9"], "--address: no Ray cluster answers at ray://127.0.0.1:9"),
    # several teachers at once: one line each before any work
    (["distill", "--teacher", "ZOO/own-classes", "--teacher", "ZOO/own-classes"],
     "--teacher: 'ZOO/own-classes' is given twice; a mixture's teachers are distinct"),
    (["distill", "--teacher", "ZOO/own-classes", "--teacher", "ZOO/random", "--weights", "1"],
     "--weights: 1 weight(s) for 2 teacher(s); expected one per --teacher"),
    (["distill", "--teacher", "ZOO/own-classes", "--teacher", "ZOO/random", "--weights", "0,0"],
     "--weights: expected non-negative numbers with a positive sum, got 0,0"),
    (["distill", "--teacher", "ZOO/own-classes", "--teacher", "ZOO/random", "--weights", "a,b"],
     "--weights: expected comma-separated numbers (0.7,0.3), got 'a,b'"),
    (["distill", "--teacher", "ZOO/own-classes", "--weights", "1"],
     "--weights: weights are for several teachers at once (repeat --teacher)"),
    (["distill", "--teacher", "ZOO/own-classes", "--teacher", "ZOO/random", "--loss", "kl"],
     "--loss kl: several teachers at once need the OT loss (--loss ot)"),
    (["select", "--mixture", "4", "--shortlist", "3"], "--mixture: 4 teachers, but the shortlist holds 3"),
    (["select", "--mixture", "1"], "--mixture: expected 0 (no mixture) or a value >= 2, got 1"),
    (["distill", "--teacher", "ZOO/own-classes", "--per-image-weights"],
     "--per-image-weights: weighs several teachers per image; give two --teacher or more"),
    (["select", "--per-image-weights", "--no-cover"], "--per-image-weights: weighs several teachers per image; give --mixture K"),
    (["select", "--mixture-temperature", "0"], "--mixture-temperature: expected a value > 0, got 0"),
]


@pytest.mark.parametrize("args, message", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_a_bad_option_is_one_line_before_anything_runs(args, message, tiny_zoo, task_path, tmp_path):
    command, *options = args
    options = [str(tmp_path / o) if o.startswith("NOWHERE") else o.replace("ZOO", str(tiny_zoo)) for o in options]
    message = message.replace("NOWHERE", str(tmp_path / "NOWHERE")).replace("ZOO", str(tiny_zoo))
    where = ["--zoo", str(tiny_zoo)] if command in ("scan", "select") else []
    out = earlier_output(tmp_path)
    before = snapshot(out)
    result = runner.invoke(app, [command, *where, "--task", str(task_path), "--out", str(out), *options])
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------
# Output folders and the tables in them.

def o_is_a_file(out):
    shutil.rmtree(out)
    out.write_text("a file where the output folder should be")
    return out, out


def o_under_a_file(out):
    (out / "earlier.txt").write_text("an earlier run's output\n")
    return out / "earlier.txt" / "deeper", out / "earlier.txt"


def o_table(name: str, data: bytes | None = None, table: pa.Table | None = None):
    def make(out):
        if table is not None:
            pq.write_table(table, out / name)
        else:
            (out / name).write_bytes(data)
        return out, out / name
    return make


OTHER_TABLE = pa.table({"x": [1, 2, 3]})
EMPTY_SCHEMA = pa.table({"teacher_id": pa.array([], pa.string())})
OUTPUTS = [
    ("scan", "out is a file", o_is_a_file, "cannot write the output here"),
    ("scan", "out under a file", o_under_a_file, "cannot write the output here"),
    ("distill", "out is a file", o_is_a_file, "cannot write the output here"),
    ("distill", "out under a file", o_under_a_file, "cannot write the output here"),
    ("select", "out is a file", o_is_a_file, "cannot write the output here"),
    ("select", "out under a file", o_under_a_file, "cannot write the output here"),
    ("demo", "out is a file", o_is_a_file, "cannot write the output here"),
    ("scan", "scores not parquet", o_table("scores.parquet", GARBAGE), "not a readable Parquet table"),
    ("scan", "scores empty file", o_table("scores.parquet", b""), "not a readable Parquet table"),
    ("scan", "scores of another schema", o_table("scores.parquet", table=OTHER_TABLE), "not a scores table"),
    ("scan", "history not parquet", o_table("history.parquet", GARBAGE), "not a readable Parquet table"),
    ("scan", "history of another schema", o_table("history.parquet", table=OTHER_TABLE), "not a history table"),
    ("scan", "catalogue not parquet", o_table("catalogue.parquet", GARBAGE), "not a readable Parquet table"),
    ("scan", "catalogue of another schema", o_table("catalogue.parquet", table=OTHER_TABLE), "not a catalogue"),
    ("history", "history not parquet", o_table("history.parquet", GARBAGE), "not a readable Parquet table"),
    ("history", "history of another schema", o_table("history.parquet", table=OTHER_TABLE), "not a history table"),
    ("report", "scores not parquet", o_table("scores.parquet", GARBAGE), "not a readable Parquet table"),
    ("report", "scores of another schema", o_table("scores.parquet", table=OTHER_TABLE), "not a scores table"),
    ("report", "selection not parquet", o_table("selection.parquet", GARBAGE), "not a readable Parquet table"),
    ("select", "scores not parquet", o_table("scores.parquet", GARBAGE), "not a readable Parquet table"),
]


@pytest.mark.parametrize("command, make, expected", [(c[0], *c[2:]) for c in OUTPUTS],
                         ids=[f"{c[0]}: {c[1]}" for c in OUTPUTS])
def test_a_bad_output_folder_or_table_is_one_line(command, make, expected, tiny_zoo, task_path, tmp_path):
    out, named = make(earlier_output(tmp_path))
    if command == "report" and not (tmp_path / "out" / "scores.parquet").exists():
        write_scores([], ["leep"], tmp_path / "out" / "scores.parquet")  # a good one beside the bad selection
    before = snapshot(tmp_path)
    args = {"scan": ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(out)],
            "select": ["select", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(out)],
            "distill": ["distill", "--task", str(task_path), "--out", str(out)],
            "demo": ["demo", "--out", str(out)],
            "history": ["history", "--out", str(out)],
            "report": ["report", "--out", str(out)]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = one_error_line(result)
    assert message.startswith(str(named)) and expected in message, message
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------------
# Faults: work that cannot be done is refused before it is started.

def test_a_budget_that_covers_no_teacher_is_one_line_before_any_work(tiny_zoo, task_path, tmp_path):
    out = earlier_output(tmp_path)
    result = runner.invoke(app, ["scan", "--zoo", str(tiny_zoo), "--task", str(task_path), "--out", str(out),
                                 "--budget", "1000"])
    assert result.exit_code == 2, result.output
    message = one_error_line(result)
    assert message.startswith("--budget: 1e+03 FLOPs does not cover one teacher: the cheapest, ") and "FLOPs on the first round's probe of" in message
    assert not (out / "scores.parquet").exists() and not (out / "cache").exists()
