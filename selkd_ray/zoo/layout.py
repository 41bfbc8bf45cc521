"""Where a zoo's teachers are: the folder layouts teams keep, walked at any depth, each teacher given its id.

Recognised (a teacher folder is not descended into):
- a timm folder (`config.json` with `architecture`, `model.safetensors` or `pytorch_model.bin`), as timm's
  `save_for_hf` writes it;
- a transformers image classifier (`config.json` with `architectures`/`model_type`, the same weight files), as
  `save_pretrained` writes it;
- a Hugging Face cache repo (`models--org--name/snapshots/<revision>/`, read by huggingface_hub's own
  `scan_cache_dir`): the teacher id is the repo id, the revision is the one `refs/main` names (else the newest).
A folder of some other layout that holds model files is a teacher with an error, so it is listed and said.
The id of a plain folder is its path inside the zoo (`org/name`); the indexer (`zoo.py`) keeps a teacher's id
when its folder moves within the zoo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import SelkdError, fail
from ..io.model_files import CONFIG_FILE, PREPROCESSOR_FILE, SHARD_INDEXES, WEIGHT_FILES, read_json_config, weights_in  # noqa: F401

MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".pb", ".tflite")
CACHE_PREFIX = "models--"


@dataclass(frozen=True)
class TeacherFolder:
    """One teacher's folder as found in the zoo: its id, the library that wrote it, the files that define it."""

    teacher_id: str
    folder: Path
    library: str = ""  # "timm" or "transformers"; "" when the layout is not one we read
    revision: str = ""  # the Hugging Face cache revision (commit hash), when it came from a cache
    problem: str = ""  # non-empty: why this folder cannot be a teacher (one line)

    @property
    def weights(self) -> Path | None:
        return weights_in(self.folder)

    @property
    def defining_files(self) -> list[Path]:
        """Every file that changes the teacher's predictions or label names: weights (and shards) and configs."""
        names = sorted(os.listdir(self.folder)) if self.folder.is_dir() else []
        keep = [n for n in names if n in (CONFIG_FILE, PREPROCESSOR_FILE, *SHARD_INDEXES)
                or n.endswith((".safetensors", ".bin"))]
        return [self.folder / n for n in keep if (self.folder / n).is_file()]


def library_of(folder: Path) -> tuple[str, str]:
    """(library, problem) of a folder from its config.json: timm configs name an `architecture`, transformers
    configs `architectures` or a `model_type`."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        files = ", ".join(model_files(folder)[:3]) or "no model file"
        return "", (f"{path}: missing; unknown teacher layout ({files}); expected a timm or transformers "
                    "folder: config.json beside model.safetensors or pytorch_model.bin")
    try:
        config = read_json_config(path)
    except SelkdError as err:
        return "timm", str(err)
    if "architecture" in config:
        return "timm", ""
    if "architectures" in config or "model_type" in config:
        return "transformers", ""
    return "", (f"{path}: architecture: missing; expected a timm config (architecture) or a transformers "
                "config (architectures, model_type)")


def model_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(MODEL_SUFFIXES))


def is_teacher_folder(folder: Path, files: list[str]) -> bool:
    """A folder holding a config.json or any model file is meant to be a teacher."""
    return CONFIG_FILE in files or any(name.endswith(MODEL_SUFFIXES) for name in files)


def teacher_at(folder: Path, teacher_id: str, revision: str = "") -> TeacherFolder:
    """The teacher in one folder, with the library that wrote it (or the reason it is none we read)."""
    library, problem = library_of(folder)
    found = TeacherFolder(teacher_id, folder, library, revision, problem)
    if not problem and found.weights is None and not any((folder / n).is_file() for n in SHARD_INDEXES):
        return replace(found, problem=f"{folder / WEIGHT_FILES[0]}: missing; expected the teacher's weights "
                                      f"({' or '.join(WEIGHT_FILES)})")
    return found


def cache_snapshots(cache_dir: Path, zoo_dir: Path | None = None) -> list[TeacherFolder]:
    """The model repos of a Hugging Face cache folder, each at the revision `refs/main` names (else the newest),
    as huggingface_hub itself reads the cache. A `models--` folder it cannot read is not dropped: a plain
    teacher folder that happens to carry the prefix is read as one (its id its path in `zoo_dir`); any other
    is an invalid teacher whose line is huggingface_hub's own reason (a `refs/main` naming a missing revision,
    no snapshots/)."""
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache_dir)
    teachers, read = [], set()
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        read.add(Path(repo.repo_path).name)
        if repo.repo_type != "model":
            continue
        if not repo.revisions:
            teachers.append(TeacherFolder(repo.repo_id, Path(repo.repo_path),
                                          problem=f"{repo.repo_path}: no revision under snapshots/; expected a "
                                                  "Hugging Face cache repo holding a downloaded model"))
            continue
        chosen = (next((r for r in repo.revisions if "main" in r.refs), None)
                  or max(repo.revisions, key=lambda r: r.last_modified))
        teachers.append(teacher_at(Path(chosen.snapshot_path), repo.repo_id, chosen.commit_hash))
    for folder in sorted(p for p in cache_dir.iterdir() if p.name.startswith(CACHE_PREFIX) and p.is_dir()):
        if folder.name in read:
            continue
        if is_teacher_folder(folder, [p.name for p in folder.iterdir()]):
            teachers.append(teacher_at(folder, folder.relative_to(zoo_dir or cache_dir).as_posix()))
            continue
        why = next((str(w).splitlines()[0].replace(f" ({folder}).", "").replace(f" ({folder})", "")
                    for w in info.warnings if folder.name in str(w)), "not a cache repo it can read")
        repo_id = folder.name[len(CACHE_PREFIX):].replace("--", "/")
        teachers.append(TeacherFolder(repo_id, folder, problem=f"{folder}: {why} (huggingface_hub's "
                                                                "CorruptedCacheException); the repo is left out"))
    return teachers


def find_teachers(zoo_dir: Path) -> list[TeacherFolder]:
    """Every teacher under `zoo_dir`, at any depth, in id order (hidden folders are skipped)."""
    if not zoo_dir.is_dir():
        raise fail(str(zoo_dir), "not a folder; expected a zoo folder of teacher folders")
    found: list[TeacherFolder] = []
    caches: set[Path] = set()
    seen: set[Path] = set()  # folders by their real path: a symlinked folder is walked once, a link loop ends
    for root, folders, files in os.walk(zoo_dir, followlinks=True):  # a zoo of links to shared storage
        here, real = Path(root), Path(root).resolve()
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        if any(name.startswith(CACHE_PREFIX) for name in folders):
            caches.add(here)
        folders[:] = sorted(f for f in folders if not f.startswith(".") and not f.startswith(CACHE_PREFIX))
        if here != zoo_dir and is_teacher_folder(here, files):
            found.append(teacher_at(here, here.relative_to(zoo_dir).as_posix()))
            folders[:] = []
    for cache in sorted(caches):
        found.extend(cache_snapshots(cache, zoo_dir))
    return sorted(found, key=lambda t: t.teacher_id)


def teacher_in(folder: Path) -> TeacherFolder:
    """One teacher folder given by path (`selkd distill --teacher`): a plain folder, a cache snapshot or a
    cache repo folder (`models--org--name`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise fail(str(folder), "not a folder; expected a teacher folder (config.json and its weights)")
    if folder.name.startswith(CACHE_PREFIX):
        snapshots = [t for t in cache_snapshots(folder.parent) if folder.resolve() in t.folder.parents]
        if snapshots:
            return snapshots[0]
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith(CACHE_PREFIX):
        repo = folder.parent.parent.name[len(CACHE_PREFIX):].replace("--", "/")
        return teacher_at(folder, repo, folder.name)
    return teacher_at(folder, folder.name)
