"""Target tasks on disk: a Parquet table (image bytes, label, split) or an ImageFolder tree."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..errors import fail
from ..records import Task
from .atomic import write_table
from .task_images import Surveyor, column_of, file_chunks, parquet_chunks, survey_here

SPLITS = ("train", "val", "test", "unlabelled")
TASK_SCHEMA = pa.schema([("image", pa.binary()), ("label", pa.int32()), ("split", pa.string())])
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (C, H, W) -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_task(task: Task, path: str | Path) -> Path:
    table = pa.table({"image": [encode_png(im) for im in task.images],
                      "label": pa.array(np.where(task.labels < 0, None, task.labels).tolist(), pa.int32()),
                      "split": task.splits.tolist()}, schema=TASK_SCHEMA)
    table = table.replace_schema_metadata({"selkd.label_names": json.dumps(list(task.label_names)),
                                           "selkd.task_name": task.name})
    return write_table(table, path)


def load_task(path: str | Path, surveyor: Surveyor = survey_here) -> Task:
    """Read and validate a task; every problem is one line naming the file and field.

    A Parquet file of (image, label, split); a folder of Parquet files (the Hugging Face `datasets` layout,
    `data/train-00000-of-00001.parquet` and so on: the split from each file's name, `image` as
    struct<bytes, path>, label names from the `ClassLabel` feature in the schema metadata, label -1 as
    unlabelled); or an ImageFolder tree. Labels and splits are read whole; the images are surveyed chunk by
    chunk (by `surveyor`: here, or on Ray Data) and kept as references (`ImageColumn`), not pixels."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))
        task = read_tables(path, files, surveyor) if files else read_image_folder(path, surveyor)
        return validate_task(task, str(path))
    if not path.is_file():
        raise fail(str(path), "no such file; expected a task Parquet table or an ImageFolder tree")
    return validate_task(read_tables(path, [path], surveyor), str(path))


def read_tables(where: Path, files: list[Path], surveyor: Surveyor) -> Task:
    """One task from Parquet files that agree on their label names."""
    parts = [read_task_table(file) for file in files]
    names = {part[1] for part in parts}
    if len(names) > 1:
        raise fail(f"{files[1]}: label_names", f"differ from {files[0].name}'s; expected one label space")
    metadata = parts[0][0].schema.metadata or {}
    name = metadata.get(b"selkd.task_name", where.stem.encode()).decode(errors="replace")
    labels, splits, chunks = [], [], []
    for file, (table, _) in zip(files, parts):
        labels_here = parse_labels(table.column("label"), f"{file}: label", allow_minus_one=is_hf(table))
        splits_here = parse_splits(table.column("split"), f"{file}: split").astype(object)
        if is_hf(table):
            splits_here[labels_here < 0] = "unlabelled"
        labels.append(labels_here)
        splits.append(splits_here)
        chunks += parquet_chunks(file, f"{file}: image")
    column, kept, skipped = column_of(chunks, list(surveyor(chunks)))
    return Task(name, column, np.concatenate(labels)[kept], np.concatenate(splits).astype(str)[kept],
                parts[0][1], skipped)


def is_hf(table: pa.Table) -> bool:
    return b"huggingface" in (table.schema.metadata or {})


def read_task_table(file: Path) -> tuple[pa.Table, tuple[str, ...]]:
    """(the label and split columns of one Parquet file, its label names); the images stay in the file."""
    try:
        schema = pq.read_schema(file)
        for column in ("image", "label"):
            if column not in schema.names:
                raise fail(str(file), f"missing column '{column}'; expected image, label, split")
        table = pq.read_table(file, columns=[c for c in ("label", "split") if c in schema.names])
    except (pa.ArrowInvalid, OSError) as err:
        raise fail(str(file), f"not a Parquet table ({err})") from None
    if "split" not in table.column_names:
        split = split_of_file(file)
        if split is None:
            raise fail(str(file), "missing column 'split'; expected image, label, split (or a Hugging Face "
                       "datasets file named by its split, such as train-00000-of-00001.parquet)")
        table = table.append_column("split", pa.array([split] * table.num_rows, pa.string()))
    table = table.replace_schema_metadata(schema.metadata)  # the file's metadata: label names, datasets features
    return table, table_label_names(table, file)


HF_SPLITS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "test": "test",
             "unlabeled": "unlabelled", "unlabelled": "unlabelled"}


def split_of_file(file: Path) -> str | None:
    """The split a Hugging Face datasets file is named by: train-00000-of-00003.parquet, validation.parquet."""
    return HF_SPLITS.get(file.stem.split("-")[0].lower())


def table_label_names(table: pa.Table, file: Path) -> tuple[str, ...]:
    """Label names from `selkd.label_names`, else from the `datasets` ClassLabel feature of the label column."""
    metadata = table.schema.metadata or {}
    if b"selkd.label_names" in metadata:
        return parse_label_names(metadata[b"selkd.label_names"], f"{file}: label_names")
    if b"huggingface" in metadata:
        try:
            feature = json.loads(metadata[b"huggingface"])["info"]["features"]["label"]
        except (ValueError, KeyError, TypeError):
            feature = None
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and "names" in feature:
            return parse_label_names(json.dumps(feature["names"]).encode(), f"{file}: label_names")
    raise fail(f"{file}: label_names", "missing from the table's metadata (key selkd.label_names, or a "
               "Hugging Face ClassLabel feature for the label column)")


def parse_label_names(raw: bytes, where: str) -> tuple[str, ...]:
    """The task's label names: a JSON list of unique, non-empty strings (a bare string, numbers or a JSON
    object are refused: they once became one name per character, or names that were not strings)."""
    try:
        names = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise fail(where, f"not JSON ({err}); expected a JSON list of unique strings") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise fail(where, f"expected a JSON list of unique non-empty strings, got {json.dumps(names)[:80]}")
    return tuple(names)


def parse_labels(column: pa.ChunkedArray, where: str, allow_minus_one: bool = False) -> np.ndarray:
    """Integer labels, null (-1 here) for unlabelled rows. Floats are taken only when every value is a whole
    number (pandas writes an integer column with nulls as float64); 2.7 is refused, never truncated to 2."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
        raise fail(where, f"column of type {kind}; expected integer class indices (null for unlabelled rows)")
    values = column.to_pylist()
    for row, value in enumerate(values):
        if value is None:
            continue
        if value != value or value != int(value):  # NaN, or not a whole number
            raise fail(where, f"value {value} at row {row} is not a whole number; expected integer class indices")
        if value < 0 and not (allow_minus_one and value == -1):  # datasets writes -1 for "no label"
            raise fail(where, f"value {int(value)} at row {row} is negative; expected 0..K-1 (null for unlabelled rows)")
    return np.array([-1 if v is None else int(v) for v in values], dtype=np.int64)  # -1: unlabelled


def parse_splits(column: pa.ChunkedArray, where: str) -> np.ndarray:
    values = column.to_pylist()
    bad = next((row for row, value in enumerate(values) if not isinstance(value, str)), None)
    if bad is not None:
        raise fail(where, f"value {values[bad]!r} at row {bad}; expected one of {', '.join(SPLITS)}")
    return np.array(values, dtype=object).astype(str)


def read_image_folder(root: Path, surveyor: Surveyor) -> Task:
    """root/<split>/<class name>/<image>; root/unlabelled/<image> for images without labels. Split folders
    take the names the Hugging Face layout takes (`validation/` is val). The classes are every split's class
    folders: one found in val/ or test/ alone is then named as a class without a train example, not dropped."""
    train = root / "train"
    if not train.is_dir():
        raise fail(str(root), "expected an ImageFolder tree with a train/ folder of class folders")
    folders: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        split = HF_SPLITS.get(folder.name.lower())
        if split is None:
            continue
        if split in folders:
            raise fail(str(folder), f"a second {split} split beside {folders[split].name}/; expected one folder "
                                    f"per split")
        folders[split] = folder
    label_names = tuple(sorted({p.name for split, folder in folders.items() if split != "unlabelled"
                                for p in folder.iterdir() if p.is_dir()}))
    entries: list[tuple[Path, int, str]] = []
    for split in SPLITS:
        folder = folders.get(split)
        if folder is None:
            continue
        entries += [(p, -1, split) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        for index, name in enumerate(label_names):
            entries += [(p, index, split) for p in sorted((folder / name).glob("*"))
                        if p.suffix.lower() in IMAGE_SUFFIXES]
    chunks = file_chunks([file for file, _, _ in entries])
    column, kept, skipped = column_of(chunks, list(surveyor(chunks)))
    labels = np.array([label for _, label, _ in entries], dtype=np.int64)
    splits = np.array([split for _, _, split in entries], dtype=str)
    return Task(root.name, column, labels[kept], splits[kept], label_names, skipped)


def validate_task(task: Task, where: str) -> Task:
    if len(task.label_names) < 2:
        raise fail(f"{where}: label_names", f"expected at least two classes, got {len(task.label_names)}")
    if len(set(task.label_names)) != len(task.label_names):
        raise fail(f"{where}: label_names", "expected unique names")
    bad = np.flatnonzero(task.labels >= len(task.label_names)) if len(task.labels) else []
    if len(bad):
        raise fail(f"{where}: label", f"value {task.labels[bad[0]]} at row {bad[0]} is outside the "
                   f"{len(task.label_names)} label names {list(task.label_names)}")
    unknown = sorted(set(task.splits) - set(SPLITS))
    if unknown:
        raise fail(f"{where}: split", f"unknown split '{unknown[0]}'; expected one of {', '.join(SPLITS)}")
    labelled = task.labels >= 0
    if np.any(labelled & (task.splits == "unlabelled")) or np.any(~labelled & (task.splits != "unlabelled")):
        raise fail(f"{where}: label", "expected a label on every train/val/test row and none on unlabelled rows")
    train_labels = task.labels[task.splits == "train"]
    missing = [n for i, n in enumerate(task.label_names) if not np.any(train_labels == i)]
    if missing:
        why = f" ({len(task.skipped)} image{'s' * (len(task.skipped) > 1)} left out: {task.skipped[0]})" if task.skipped else ""
        raise fail(f"{where}: split", f"class '{missing[0]}' has no labelled train example{why}")
    return task
