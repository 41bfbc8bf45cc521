"""Index a zoo into teacher specs, incrementally: only new or changed teacher folders are hashed and read."""
from __future__ import annotations

import collections
import hashlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from ..errors import SelkdError, fail
from ..records import TeacherSpec
from .layout import TeacherFolder, find_teachers, teacher_in

Entry = tuple[TeacherSpec, int, int]  # (spec, size of its defining files, sum of their mtimes in ns)


def files_sha256(paths: list[Path], chunk: int = 1 << 20) -> str:
    """sha256 over the files' names and bytes, in order: the teacher's weights and configs together."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def keep_moved_ids(fresh: list[TeacherSpec], gone: dict[str, str], taken: set[str]) -> dict[str, str]:
    """{path: id} of newly indexed teachers: one whose content the catalogue knew under an id whose folder is
    gone keeps that id (its folder moved within the zoo), unless a folder found now has that id as its own.

    gone: {content hash: id} of catalogued teachers whose folder is no longer where the catalogue had it;
    taken: the ids the folders found have by their place."""
    taken, ids = set(taken), {}
    for spec in fresh:
        old = gone.get(spec.content_hash) if not spec.error else None
        if old and old != spec.teacher_id and old not in taken:
            taken.add(old)
            ids[spec.path] = old
        else:
            ids[spec.path] = spec.teacher_id
    return ids


def require_zoo(zoo_dir: Path) -> list[TeacherFolder]:
    """The zoo's teachers; a zoo with none is one line (an empty zoo once gave an empty ranking, exit 0)."""
    found = find_teachers(zoo_dir)
    if not found:
        raise fail(str(zoo_dir), "no teacher folders (config.json beside model.safetensors or pytorch_model.bin, at "
                   "any depth, or a Hugging Face cache); expected a zoo of teachers")
    return found


def fingerprint(found: TeacherFolder) -> tuple[int, int]:
    """(total size, sum of mtimes in ns) of the folder's defining files: a rewritten file changes it."""
    stats = [path.stat() for path in found.defining_files]
    return sum(s.st_size for s in stats) if stats else -1, sum(s.st_mtime_ns for s in stats) if stats else -1


def describe_folder(found: TeacherFolder) -> dict:
    """The spec's fields that the library reading this folder decides (architecture, labels, size, FLOPs,
    preprocessing); a broken folder raises SelkdError."""
    if found.library == "transformers":
        from ..models.hf import describe_hf, read_hf_config

        config = read_hf_config(found.folder)  # before transformers is needed: a bad config says so either way
        params, flops = describe_hf(found.folder, config["preprocessing"], found.weights)
        return dict(architecture=config["architecture"], label_names=config["label_names"],
                    label_names_known=config["label_names_known"], param_count=params, flops_per_sample=flops,
                    **asdict(config["preprocessing"]))
    from ..models.timm_models import describe, read_teacher_config

    config = read_teacher_config(found.folder)
    weights = found.weights
    if weights is None:
        raise fail(str(found.folder / "model.safetensors"), "missing; expected the teacher's weights")
    params, flops, preprocessing = describe(config, weights)
    return dict(architecture=config["architecture"], label_names=config["label_names"],
                label_names_known=config["label_names_known"], param_count=params, flops_per_sample=flops,
                **asdict(preprocessing))


def index_teacher(found: TeacherFolder | Path) -> Entry:
    """One teacher's spec; a broken folder gives a spec whose `error` says what is wrong."""
    if not isinstance(found, TeacherFolder):
        found = teacher_in(Path(found))
    size, mtime = fingerprint(found)
    base = dict(teacher_id=found.teacher_id, path=str(found.folder.resolve()), architecture="", content_hash="",
                label_names=(), input_size=(0, 0, 0), mean=(), std=(), library=found.library or "timm",
                revision=found.revision)
    try:
        if found.problem:
            raise SelkdError(found.problem)
        base.update(describe_folder(found))
        base["content_hash"] = files_sha256(found.defining_files)
        return TeacherSpec(**base), size, mtime
    except SelkdError as err:
        return TeacherSpec(**base, error=str(err)), size, mtime


def index_here(folders: list[TeacherFolder]) -> list[Entry]:
    """Index teachers one after the other in this process (a few new teachers are not worth a Ray start)."""
    return [index_teacher(folder) for folder in folders]


def index_folders(zoo_dir: Path, previous: list[Entry] | None = None,
                  index_many: Callable[[list[TeacherFolder]], list[Entry]] = index_here) -> list[Entry]:
    """Specs for every teacher of the zoo, reusing rows of `previous` whose folder is unchanged (no model is
    built for them); `index_many` indexes the rest (in order). A teacher whose folder moved within the zoo
    keeps its id."""
    known = {spec.path: (spec, size, mtime) for spec, size, mtime in previous or [] if not spec.error}
    found = find_teachers(zoo_dir)
    entries: list[Entry | None] = []
    fresh: list[int] = []
    for teacher in found:
        old = known.get(str(teacher.folder.resolve()))
        unchanged = old is not None and fingerprint(teacher) == old[1:] and old[0].revision == teacher.revision
        entries.append(old if unchanged else None)
        if not unchanged:
            fresh.append(len(entries) - 1)
    for i, entry in zip(fresh, index_many([found[i] for i in fresh])):
        entries[i] = entry
    here = {spec.path for spec, _, _ in entries}
    gone = {spec.content_hash: spec.teacher_id for spec, _, _ in known.values() if spec.path not in here}
    ids = keep_moved_ids([entries[i][0] for i in fresh], gone, {t.teacher_id for t in found})
    for i in fresh:
        spec, size, mtime = entries[i]
        entries[i] = (replace(spec, teacher_id=ids[spec.path]), size, mtime)
    return shared_label_names(own_ids_first(entries, {str(t.folder.resolve()): t.teacher_id for t in found}))


def shared_label_names(entries: list[Entry]) -> list[Entry]:
    """One tuple per distinct label space: a zoo of 5,000 ImageNet teachers holds the 1,000 names once, not
    5,000 times (the driver's memory must not grow with the zoo's label spaces)."""
    spaces: dict[tuple[str, ...], tuple[str, ...]] = {}
    return [(replace(spec, label_names=spaces.setdefault(spec.label_names, spec.label_names)), size, mtime)
            for spec, size, mtime in entries]


def own_ids_first(entries: list[Entry], own: dict[str, str]) -> list[Entry]:
    """Ids stay unique: where a kept id meets a folder that has it as its own, the moved teacher takes its own."""
    counts = collections.Counter(spec.teacher_id for spec, _, _ in entries)
    return [(replace(spec, teacher_id=own[spec.path]) if counts[spec.teacher_id] > 1 else spec, size, mtime)
            for spec, size, mtime in entries]
