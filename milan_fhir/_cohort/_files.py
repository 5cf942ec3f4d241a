"""Finding the input files of an export folder and cutting them into chunks that workers read on their own.

The folder is listed and each file sniffed by the one reader of every path (``milan_fhir._sources``): any file
naming, NDJSON (plain or .gz, with or without a byte-order mark) and whole-file JSON (a pretty-printed Bundle or
resource) alike; broken links, pipes and other files are listed as skipped, with why. Plain NDJSON files are cut
into byte ranges that start and end on line boundaries (``CHUNK_BYTES`` each, independent of the number of
workers); a gzip file and a whole-file JSON document are one chunk each. Lines are cut by
``_sources.split_lines``, which refuses a line above the size limit without holding it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Set as AbstractSet
from typing import BinaryIO

from .. import _sources
from ..errors import InputError

__all__ = ["Chunk", "SourceFile", "find_files", "plan_chunks", "CHUNK_BYTES"]

#: nominal size of one plain-file chunk
CHUNK_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str
    size: int
    mtime_ns: int
    gz: bool
    first_type: str | None = None  # resourceType of the first line (a hint for planning, never trusted)
    kind: str = "lines"  # "lines" (NDJSON) or "document" (one JSON value over the whole file)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of work: ``[start, end)`` bytes of a plain NDJSON file, or a whole file (``end`` = -1: a gzip
    file, or a ``document``)."""

    index: int
    path: str
    start: int
    end: int
    gz: bool
    weight: int = 1  # relative cost per byte, by the type of the file's first line (TYPE_WEIGHTS)
    kind: str = "lines"

    @property
    def nbytes(self) -> int:
        return self.end - self.start if self.end >= 0 else max(1, os.path.getsize(self.path))

    @property
    def cost(self) -> int:
        """Estimated work (for ordering tasks)."""
        return self.nbytes * self.weight * (4 if self.gz else 1)  # gzip: ~4x the bytes once decompressed


#: cost per byte of a file by the type of its first line, relative to a file of mostly unused lines (measured on
#: the --scale 10 benchmark export, per chunk: Observation 1.4-1.7 ms/MB, Encounter and MedicationRequest ~1,
#: Procedure 3.4-4.5, Condition 25 (every Condition is parsed, for the text safety net), Patient 57-70 (every
#: Patient is parsed and adapted)): tasks are ordered by it, costliest first, and chunks cut to a similar cost
TYPE_WEIGHTS = {"Patient": 32, "Condition": 16, "Procedure": 3}
DOCUMENT_WEIGHT = 8  # every entry of a whole-file Bundle is parsed


def find_files(source: str | os.PathLike[str], *, exclude: AbstractSet[Path] = frozenset()) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """Input files of ``source`` (a folder or one file), sorted by name; and (file, why) for entries skipped."""
    p = Path(source)
    if not os.path.lexists(p):
        raise InputError("no such file or folder", file=str(p))
    skipped: list[tuple[str, str]] = []
    if p.is_dir():
        candidates, skips = _sources.list_folder(p, exclude=exclude)
        skipped = [(s.path, s.reason) for s in skips]
    else:
        candidates = [p]
    files: list[SourceFile] = []
    for f in candidates:
        sn = _sources.sniff(f)
        if sn.kind is None:
            skipped.append((str(f), sn.reason or "not read"))
            continue
        st = f.stat()
        files.append(SourceFile(str(f), st.st_size, st.st_mtime_ns, sn.gz, sn.first_type, sn.kind))
    if not files:
        why = "; ".join(f"{Path(f).name}: {r}" for f, r in skipped)[:300]
        raise InputError("holds no NDJSON files (plain or .gz) and no FHIR JSON files" + (f" ({why})" if why else ""),
                         file=str(p))
    return files, skipped


def plan_chunks(files: list[SourceFile], chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut the files into chunks whose boundaries are line starts."""
    chunks: list[Chunk] = []
    for sf in files:
        if sf.kind != "lines":
            chunks.append(Chunk(len(chunks), sf.path, 0, -1, sf.gz, DOCUMENT_WEIGHT, sf.kind))
            continue
        weight = TYPE_WEIGHTS.get(sf.first_type or "", 1)
        if sf.gz:
            chunks.append(Chunk(len(chunks), sf.path, 0, -1, True, weight))
            continue
        with open(sf.path, "rb") as fh:
            start = 0
            while start < sf.size:
                end = start + max(1, chunk_bytes // weight)
                end = sf.size if end >= sf.size else min(_next_line_start(fh, end), sf.size)
                chunks.append(Chunk(len(chunks), sf.path, start, end, False, weight))
                start = end
    return chunks


def _next_line_start(fh: BinaryIO, pos: int) -> int:
    """The offset after the first newline at or after ``pos`` (end of file if none), reading in bounded blocks
    (``readline`` would hold a whole overlong line in memory)."""
    fh.seek(pos)
    while True:
        block = fh.read(1 << 20)
        if not block:
            return fh.tell()
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(block)
