"""Every folder of the library is a package the project installs: a non-editable install would lack one
left out of pyproject.toml's list."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_library_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "selkd_ray").rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)
