"""A stored task's images by reference: which file (and row of it) holds each image, never the pixels.

Reading a task surveys its images once, in chunks (a Parquet row group, or a few hundred image files): each
image is decoded to learn its shape and content hash and whether it can be read at all, then dropped. What the
driver keeps is an `ImageColumn`: a few numbers per row. Indexing the column decodes only the rows asked for,
so a probe of 200 images reads those 200, and a task of 50,000 photos is never whole in one process's memory.
The chunks are plain data, so a Ray Data pipeline (`distributed/task_data.py`) can survey them in parallel.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from ..errors import SelkdError, fail
from ..records import content_hash

GREY_MODES = ("1", "L", "LA", "P;L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
FILES_PER_CHUNK = 256


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Image bytes of any size and mode -> uint8 (C, H, W): grey modes (8- and 16-bit, with or without alpha)
    keep one channel, everything else (RGB, RGBA, palette, CMYK, ...) becomes RGB, as timm's loaders convert.
    An undecodable or zero-size image raises SelkdError naming `where`."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.mode in GREY_MODES and image.mode not in ("1", "L", "LA"):
            array = np.asarray(image, dtype=np.float64)  # 16-bit and float grey: scale to 0..255, do not clip
            top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            array = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
        else:
            array = np.asarray(image.convert("L" if image.mode in GREY_MODES else "RGB"))
    except UnidentifiedImageError:
        raise fail(where, "not a readable image (no image format PIL knows)") from None
    except Image.DecompressionBombError as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        raise fail(where, f"not read: {pixels.group(1) if pixels else 'its'} pixels is over the decompression-"
                          f"bomb limit (twice PIL's Image.MAX_IMAGE_PIXELS, {Image.MAX_IMAGE_PIXELS})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise fail(where, f"not a readable image ({str(err).splitlines()[0][:120] or type(err).__name__})") from None
    if array.size == 0:
        raise fail(where, f"zero-size image ({image.size[0]}x{image.size[1]})")
    return np.require(array[None] if array.ndim == 2 else array.transpose(2, 0, 1), requirements=["C", "W"])


def image_array(images: list[np.ndarray]) -> np.ndarray:
    """One uint8 (n, C, H, W) array when every image has one shape; else a 1-D object array of (C, H, W)
    images, each at its own size (the forward path resizes each to the model's input)."""
    if len({im.shape for im in images}) <= 1:
        return np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
    ragged = np.empty(len(images), dtype=object)
    ragged[:] = images
    return ragged


def blob(value: object, file: Path) -> bytes | None:
    """One row's image bytes: a binary value, or the `datasets` Image struct<bytes, path> (a path read relative
    to the file when the bytes are not stored)."""
    if not isinstance(value, dict):
        return value if isinstance(value, (bytes, bytearray)) else None
    data, where = value.get("bytes"), value.get("path")
    if data is None and where:
        target = Path(where) if Path(where).is_absolute() else file.parent / where
        data = target.read_bytes() if target.is_file() else None
    return data


@dataclass(frozen=True)
class Chunk:
    """Rows of one file read together: a Parquet row group, or image files (`file` then names a list)."""

    files: tuple[str, ...]  # the Parquet file alone, or the image files
    rows: tuple[int, ...]  # rows of the Parquet file (empty for image files)
    where: str  # how an error names the rows: "FILE: image"

    def blobs(self) -> Iterator[tuple[str, bytes | None]]:
        """(how to name the row, its bytes) for each row of the chunk."""
        if not self.rows:
            for file in self.files:
                path = Path(file)
                yield file, path.read_bytes() if path.is_file() else None
            return
        file = Path(self.files[0])
        try:
            reader = pq.ParquetFile(file)
        except (OSError, pa.ArrowInvalid) as err:
            raise fail(str(file), f"cannot be read any more ({type(err).__name__}); read the task again") from None
        starts = np.cumsum([0] + [reader.metadata.row_group(g).num_rows for g in range(reader.num_row_groups)])
        groups: dict[int, pa.ChunkedArray] = {}
        for row in self.rows:
            group = int(np.searchsorted(starts, row, side="right") - 1)
            if group not in groups:  # a chunk is one row group, or a few rows of one
                groups[group] = reader.read_row_group(group, columns=["image"]).column("image")
            yield f"{self.where} at row {row}", blob(groups[group][int(row - starts[group])].as_py(), file)


def decoded(chunk: Chunk) -> Iterator[tuple[np.ndarray | None, str]]:
    """(image, '') for each readable row of the chunk, (None, the line that says why) for each other."""
    for where, data in chunk.blobs():
        try:
            if data is None:
                raise fail(where, "no image bytes")
            yield decode_image(data, where), ""
        except SelkdError as err:
            yield None, str(err)


@dataclass(frozen=True)
class Survey:
    """What one chunk's images are: per row, its (C, H, W) and content hash, or why it was left out."""

    shapes: np.ndarray  # int32 (n, 3); zeros where unreadable
    hashes: tuple[str, ...]  # '' where unreadable
    problems: tuple[str, ...]  # '' where readable


def survey(chunk: Chunk) -> Survey:
    """Decode each image of the chunk once, keep its shape and hash, drop its pixels."""
    shapes, hashes, problems = [], [], []
    for image, problem in decoded(chunk):
        shapes.append(image.shape if image is not None else (0, 0, 0))
        hashes.append(content_hash(image) if image is not None else "")
        problems.append(problem)
    return Survey(np.array(shapes, np.int32).reshape(-1, 3), tuple(hashes), tuple(problems))


Surveyor = Callable[[list[Chunk]], Iterable[Survey]]  # surveys chunks, in order (here, or on Ray Data)


def survey_here(chunks: list[Chunk]) -> Iterable[Survey]:
    return map(survey, chunks)


def parquet_chunks(file: Path, where: str) -> list[Chunk]:
    """One chunk per row group of a Parquet file, by its absolute path: Ray workers (Ray Train's most) do not
    run in the driver's folder."""
    metadata, start, chunks = pq.ParquetFile(file).metadata, 0, []
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        chunks.append(Chunk((str(file.absolute()),), tuple(range(start, start + rows)), where))
        start += rows
    return [c for c in chunks if c.rows]


def file_chunks(files: list[Path]) -> list[Chunk]:
    """Image files FILES_PER_CHUNK at a time, by absolute path."""
    return [Chunk(tuple(str(f.absolute()) for f in files[i:i + FILES_PER_CHUNK]), (), "")
            for i in range(0, len(files), FILES_PER_CHUNK)]


@dataclass(frozen=True)
class ImageColumn:
    """A stored task's images: for each row its chunk's files and row, its shape and content hash. Indexing it
    (an index, slice, mask or array of rows) decodes those rows alone; iterating decodes a chunk at a time."""

    chunks: tuple[Chunk, ...]
    chunk_of: np.ndarray  # int32 (n,): the chunk holding each row
    place: np.ndarray  # int32 (n,): its position within that chunk
    shapes: np.ndarray  # int32 (n, 3): each image's (C, H, W)
    hashes: np.ndarray  # (n,) S64: each image's content hash (hex)

    def __len__(self) -> int:
        return len(self.chunk_of)

    @property
    def ragged(self) -> bool:
        return len(self) > 0 and bool(np.any(self.shapes != self.shapes[0]))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(object) if self.ragged else np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) if self.ragged else (len(self), *map(int, self.shapes[0] if len(self) else (1, 1, 1)))

    def __getitem__(self, index) -> np.ndarray:
        rows = np.arange(len(self))[index]
        if np.ndim(rows) == 0:
            return self.take(np.array([rows]))[0]
        return self.take(rows)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), FILES_PER_CHUNK):
            yield from self.take(np.arange(start, min(start + FILES_PER_CHUNK, len(self))))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The images of these rows, in this order, decoded from their files one chunk at a time."""
        rows = np.asarray(rows, dtype=np.int64)
        images: list[np.ndarray | None] = [None] * len(rows)
        for chunk_index in np.unique(self.chunk_of[rows]) if len(rows) else []:
            here = np.flatnonzero(self.chunk_of[rows] == chunk_index)
            chunk = self.chunks[chunk_index]
            places = self.place[rows[here]]
            wanted = Chunk(tuple(chunk.files[p] for p in places) if not chunk.rows else chunk.files,
                           tuple(chunk.rows[p] for p in places) if chunk.rows else (), chunk.where)
            for slot, (image, problem) in zip(here, decoded(wanted)):
                if image is None:  # readable when surveyed: the file changed since the task was read
                    raise SelkdError(f"{problem} (changed since the task was read; read the task again)")
                images[slot] = image
        return image_array(images)


def column_of(chunks: list[Chunk], surveys: list[Survey]) -> tuple[ImageColumn, np.ndarray, tuple[str, ...]]:
    """(the column of readable images, the kept rows of the task in chunk order, one line per image left out)."""
    chunk_of = np.concatenate([np.full(len(s.hashes), i, np.int32) for i, s in enumerate(surveys)] or [np.zeros(0, np.int32)])
    place = np.concatenate([np.arange(len(s.hashes), dtype=np.int32) for s in surveys] or [np.zeros(0, np.int32)])
    shapes = np.concatenate([s.shapes for s in surveys] or [np.zeros((0, 3), np.int32)])
    hashes = np.array([h for s in surveys for h in s.hashes], dtype="S64")
    problems = [p for s in surveys for p in s.problems]
    kept = np.array([row for row, p in enumerate(problems) if not p], dtype=np.int64)
    skipped = tuple(f"{p} ({'row' if chunks[chunk_of[row]].rows else 'file'} left out)"
                    for row, p in enumerate(problems) if p)
    column = ImageColumn(tuple(chunks), chunk_of[kept], place[kept], shapes[kept], hashes[kept])
    return column, kept, skipped
