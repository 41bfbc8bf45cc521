"""Index a zoo folder into teacher specs, incrementally: only new or changed weight files are hashed and read."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from .errors import SelkdError, fail
from .models import CONFIG_FILE, WEIGHTS_FILE, describe, read_teacher_config
from .records import TeacherSpec


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def teacher_folders(zoo_dir: Path) -> list[Path]:
    """Every sub-folder holding a config.json or a weights file: each is meant to be a teacher."""
    if not zoo_dir.is_dir():
        raise fail(str(zoo_dir), "not a folder; expected a zoo folder of teacher folders")
    return sorted(p for p in zoo_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and ((p / CONFIG_FILE).exists() or (p / WEIGHTS_FILE).exists()))


def require_zoo(zoo_dir: Path) -> list[Path]:
    """The zoo's teacher folders; a zoo with none is one line (an empty zoo once gave an empty ranking, exit 0)."""
    folders = teacher_folders(zoo_dir)
    if not folders:
        raise fail(str(zoo_dir), "no teacher folders (a sub-folder holding config.json and model.safetensors); "
                   "expected a zoo of teachers")
    return folders


def fingerprint(folder: Path) -> tuple[int, int]:
    """(weights size, sum of the weights' and config's mtimes in ns): a rewritten file changes it."""
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    size = weights.stat().st_size if weights.is_file() else -1
    mtimes = [p.stat().st_mtime_ns for p in (weights, config) if p.is_file()]
    return size, sum(mtimes) if mtimes else -1


def index_teacher(folder: Path) -> tuple[TeacherSpec, int, int]:
    """One teacher's spec; a broken folder gives a spec whose `error` says what is wrong."""
    weights = folder / WEIGHTS_FILE
    stat = weights.stat() if weights.is_file() else None
    size, mtime = fingerprint(folder)
    base = dict(teacher_id=folder.name, path=str(folder.resolve()), architecture="", content_hash="",
                label_names=(), input_size=(0, 0, 0), mean=(), std=())
    try:
        config = read_teacher_config(folder)
        base.update(architecture=config["architecture"], label_names=config["label_names"])
        if stat is None:
            raise fail(str(weights), "missing; expected the teacher's weights in safetensors format")
        params, flops, preprocessing = describe(config, weights)
        base.update(content_hash=file_sha256(weights), param_count=params, flops_per_sample=flops,
                    **asdict(preprocessing))
        return TeacherSpec(**base), size, mtime
    except SelkdError as err:
        return TeacherSpec(**base, error=str(err)), size, mtime


def index_zoo(zoo_dir: Path, previous: list[tuple[TeacherSpec, int, int]] | None = None) -> list[tuple[TeacherSpec, int, int]]:
    """Specs for every teacher folder, reusing rows of `previous` whose weights file is unchanged."""
    known = {spec.path: (spec, size, mtime) for spec, size, mtime in previous or [] if not spec.error}
    entries = []
    for folder in teacher_folders(zoo_dir):
        old = known.get(str(folder.resolve()))
        if old and fingerprint(folder) == old[1:]:
            entries.append(old)
        else:
            entries.append(index_teacher(folder))
    return entries
