"""Finding the NDJSON files of an export folder and cutting them into chunks that workers read on their own.

Any file naming is accepted: every regular, non-hidden file of the folder (not recursive) whose first
non-blank byte (after gunzip, when the file starts with the gzip magic bytes) is ``{`` is NDJSON. Other files
are listed as skipped, with why. Plain files are cut into byte ranges that start and end on line boundaries
(``CHUNK_BYTES`` each, independent of the number of workers); a gzip file is one chunk.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError

__all__ = ["Chunk", "SourceFile", "find_files", "plan_chunks", "iter_lines", "CHUNK_BYTES"]

#: nominal size of one plain-file chunk
CHUNK_BYTES = 8 << 20
_READ_BLOCK = 8 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str
    size: int
    mtime_ns: int
    gz: bool
    first_type: str | None = None  # resourceType of the first line (a hint for planning, never trusted)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of work: ``[start, end)`` bytes of a plain file, or a whole gzip file (``end`` = -1)."""

    index: int
    path: str
    start: int
    end: int
    gz: bool
    weight: int = 1  # relative cost per byte (Patient lines are all parsed and validated)

    @property
    def nbytes(self) -> int:
        return self.end - self.start if not self.gz else max(1, os.path.getsize(self.path))

    @property
    def cost(self) -> int:
        """Estimated work (for ordering tasks)."""
        return self.nbytes * self.weight * (4 if self.gz else 1)  # gzip: ~4x the bytes once decompressed


_FIRST_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
#: cost per byte of a file whose lines are (almost) all used by the rules, relative to a noise-heavy file
PATIENT_WEIGHT = 8


def _sniff(path: Path) -> tuple[bool, str | None, str | None]:
    """(is gzip, why the file is not NDJSON or None, resourceType of the first line)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        gz = head == _GZIP_MAGIC
        opener = gzip.open if gz else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            block = fh.read(4096)
            while block and not block.strip():
                block = fh.read(4096)
    except (OSError, EOFError, zlib.error) as exc:
        return False, f"cannot be read ({getattr(exc, 'strerror', None) or exc})", None
    stripped = block.lstrip()
    if not stripped:
        return gz, "empty file", None
    if stripped[:1] != b"{":
        return gz, "not NDJSON (does not start with a JSON object)", None
    m = _FIRST_TYPE.search(stripped.split(b"\n", 1)[0])
    return gz, None, m.group(1).decode() if m else None


def find_files(source: str | Path, *, exclude: set[Path] = frozenset()) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """NDJSON files of ``source`` (a folder or one file), sorted by name; and (file, why) for files skipped."""
    p = Path(source)
    if not p.exists():
        raise InputError("no such file or folder", file=str(p))
    if p.is_file():
        candidates = [p]
    else:
        candidates = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    excl = {p.resolve() for p in exclude}  # our own output files, when SOURCE is the output folder
    files: list[SourceFile] = []
    skipped: list[tuple[str, str]] = []
    for f in candidates:
        if f.resolve() in excl:
            continue
        gz, why, first_type = _sniff(f)
        if why:
            skipped.append((str(f), why))
            continue
        st = f.stat()
        files.append(SourceFile(str(f), st.st_size, st.st_mtime_ns, gz, first_type))
    if not files:
        raise InputError("holds no NDJSON files (plain or .gz)", file=str(p))
    return files, skipped


def plan_chunks(files: list[SourceFile], chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut the files into chunks whose boundaries are line starts."""
    chunks: list[Chunk] = []
    for sf in files:
        weight = PATIENT_WEIGHT if sf.first_type == "Patient" else 1
        if sf.gz:
            chunks.append(Chunk(len(chunks), sf.path, 0, -1, True, weight))
            continue
        with open(sf.path, "rb") as fh:
            start = 0
            while start < sf.size:
                end = start + max(1, chunk_bytes // weight)
                if end >= sf.size:
                    end = sf.size
                else:
                    fh.seek(end)
                    fh.readline()  # move to the next line start
                    end = min(fh.tell(), sf.size)
                chunks.append(Chunk(len(chunks), sf.path, start, end, False, weight))
                start = end
    return chunks


def iter_lines(chunk: Chunk) -> Iterator[list[bytes]]:
    """The lines of a chunk, in blocks (lists of lines, without the newline; possibly empty lines)."""
    if not chunk.gz:
        with open(chunk.path, "rb") as fh:
            fh.seek(chunk.start)
            remaining = chunk.end - chunk.start
            tail = b""
            while remaining > 0:
                data = fh.read(min(_READ_BLOCK, remaining))
                if not data:
                    break
                remaining -= len(data)
                lines = (tail + data).split(b"\n") if tail else data.split(b"\n")
                tail = lines.pop()
                yield lines
            if tail:
                yield [tail]
        return
    try:
        with gzip.open(chunk.path, "rb") as fh:
            tail = b""
            while True:
                data = fh.read(_READ_BLOCK)
                if not data:
                    break
                lines = (tail + data).split(b"\n") if tail else data.split(b"\n")
                tail = lines.pop()
                yield lines
            if tail:
                yield [tail]
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"not a valid gzip file ({exc})", file=chunk.path) from None
