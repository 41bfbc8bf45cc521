"""Where outputs live: a local path or any pyarrow filesystem URI (file://, s3://, gs://, hdfs://)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import SelkdError


class Location:
    """A file or folder on a pyarrow filesystem; `/` joins like pathlib, so callers need not care which."""

    def __init__(self, where: "str | Path | Location") -> None:
        if isinstance(where, Location):
            self.fs, self.path, self.root_uri, self.root_path = where.fs, where.path, where.root_uri, where.root_path
            return
        text = str(where)
        if "://" in text:
            try:
                self.fs, path = pafs.FileSystem.from_uri(text.rstrip("/"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as err:
                raise SelkdError(f"{text}: not a filesystem URI pyarrow can open ({err})") from None
            self.path = self.root_path = path
            self.root_uri = text.rstrip("/")
        else:
            self.fs, self.path = pafs.LocalFileSystem(), str(Path(text).absolute())
            self.root_uri = self.root_path = self.path

    @classmethod
    def on(cls, filesystem: pafs.FileSystem, path: str, uri: str | None = None) -> "Location":
        """A location on an already-built pyarrow filesystem (say, a SubTreeFileSystem or a configured S3)."""
        location = cls.__new__(cls)
        location.fs, location.path, location.root_path = filesystem, path.rstrip("/") or "/", path.rstrip("/")
        location.root_uri = uri or path.rstrip("/")
        return location

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, path: str) -> "Location":
        other = Location(self)
        other.path = path
        return other

    def __truediv__(self, part: str) -> "Location":
        return self.child(f"{self.path.rstrip('/')}/{part}")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        return self.child(self.path.rstrip("/").rsplit("/", 1)[0] or "/")

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def native(self) -> "Path | str":
        """A pathlib.Path on the local disk, else the URI."""
        if self.is_local:
            return Path(self.path)
        return self.root_uri + self.path[len(self.root_path):]

    def __str__(self) -> str:
        return str(self.native())

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"


def writable_folder(where: "str | Path | Location", flag: str = "--out") -> Location:
    """The output folder, made if missing and proved writable by a real write, before any work is spent: a
    read-only disk, a missing permission or a file in the folder's place is one line naming the folder."""
    location = Location(where)
    try:
        location.mkdir()
        probe = location / f".selkd-write-check-{uuid.uuid4().hex}"
        with location.fs.open_output_stream(probe.path) as handle:
            handle.write(b"ok")
        location.fs.delete_file(probe.path)
    except (OSError, pa.ArrowException) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise SelkdError(f"{location}: cannot write the output here ({reason}); expected a writable folder "
                         f"({flag})") from None
    return location
