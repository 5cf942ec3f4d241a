"""Reading FHIR input — the one reader of every path (``evaluate``, ``cohort``, the server's answers).

A folder (not recursive) may mix Bundles (pretty-printed or on one line), NDJSON (plain, ``.gz``, with a UTF-8
byte-order mark, any file naming) and single resources. Every file and every line is either used, ignored with
a reason, or reported as an :class:`InputProblem` naming the file, the line (the file's line, also for a Bundle
entry: the line where the entry starts), the resource and the field:

- :func:`list_folder` names the files of a folder to read, and the entries it skips with why (broken symbolic
  links, link loops, named pipes and devices are *reported*, never opened; sub-folders and files that are
  neither FHIR-named nor JSON are only listed).
- :func:`sniff` tells how a file is read: ``lines`` (NDJSON; also a file holding one JSON value on one line)
  or ``document`` (one JSON value over several lines: a pretty Bundle or resource).
- :func:`split_lines` cuts a stream of byte blocks into lines, refusing a line longer than
  :attr:`Limits.max_line_bytes` without ever holding it; :func:`line_resources` turns one line into
  :class:`Located` resources (a Bundle on one line gives its entries). The cohort calls these same functions on
  its chunks.
- :func:`read_document` reads a whole-file JSON value (size-capped) with the line of every Bundle entry.

``read_path`` on a folder reports an unreadable file and goes on; it raises
:class:`~milan_fhir.errors.InputError` (one line naming the file and the fault) only when nothing at all can be
read. A gzip stream that inflates beyond :attr:`Limits.max_gzip_ratio` times its size is cut off and reported.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import orjson

from ._adapters._located import InputProblem, Located, iter_bundle_or_resource
from .errors import InputError

__all__ = [
    "Located", "InputProblem", "Limits", "Oversize", "Skipped", "read_path", "read_file", "read_resources",
    "list_folder", "sniff", "split_lines", "line_blocks", "line_resources", "read_document", "open_blocks", "FHIR_SUFFIXES",
    "BOM", "keep_read_blocks",
]

#: File names read whatever their content looks like (others are read when their content starts with "{").
FHIR_SUFFIXES = (".json", ".ndjson", ".jsonl", ".json.gz", ".ndjson.gz", ".jsonl.gz")
_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 2 << 20
_SNIFF_BYTES = 64 << 10


_allocator_set = False


def keep_read_blocks() -> None:
    """On glibc, let the process keep freed memory of a few read blocks for the next ones.

    glibc's ``malloc`` gives the top of its heap back to the system once more than a threshold is free there, and
    reading a large export frees and retakes a block at the top over and over: every retaken page then costs a
    page fault (measured on a 3.7 GB export: 630,000 faults, a fifth of the scan's CPU time; 14,000 with this).
    This sets the trim threshold to 3 blocks (6 MB; with 2 the faults came back) and the ``mmap`` threshold to
    2 blocks, for the whole process and for good (``mallopt`` has no way back). It does nothing elsewhere than
    glibc, and nothing when the environment sets ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_``
    (glibc's own settings win). Called wherever chunks are read (cohort, Spark tasks); safe to call again.
    """
    global _allocator_set
    if _allocator_set:
        return
    _allocator_set = True
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 2 * _BLOCK)
    mallopt(m_trim_threshold, 3 * _BLOCK)


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one input may cause. ``MILAN_FHIR_MAX_LINE_BYTES`` / ``MILAN_FHIR_MAX_GZIP_RATIO``
    set the defaults from the environment."""

    #: the largest single JSON value read: one NDJSON line, or a whole Bundle/resource file (decompressed)
    max_line_bytes: int = 64 << 20
    #: a gzip file may inflate to at most this many times its size (or ``max_line_bytes``, if larger)
    max_gzip_ratio: int = 400

    @classmethod
    def from_env(cls) -> "Limits":
        def num(name: str, default: int) -> int:
            text = os.environ.get(name, "").strip()
            if not text:
                return default
            try:
                value = int(text)
            except ValueError:
                raise InputError(f"{name}={text!r} is not a whole number") from None
            if value < 1:
                raise InputError(f"{name} must be at least 1 (got {value})")
            return value

        return cls(num("MILAN_FHIR_MAX_LINE_BYTES", cls.max_line_bytes), num("MILAN_FHIR_MAX_GZIP_RATIO", cls.max_gzip_ratio))


class Oversize(bytes):
    """Stands for a line longer than the limit (its bytes were never kept): an empty ``bytes`` with ``size``."""

    size: int

    def __new__(cls, size: int) -> "Oversize":
        obj = super().__new__(cls, b"")
        obj.size = size
        return obj


@dataclass(frozen=True)
class Skipped:
    """A folder entry that is not read: ``report`` True when the user must hear of it (it looked like input)."""

    path: str
    reason: str
    report: bool


@dataclass(frozen=True)
class Sniffed:
    kind: str | None  # "lines", "document", or None (not read: see reason)
    gz: bool
    reason: str | None = None
    first_type: str | None = None  # resourceType of the first line (a planning hint, never trusted)
    report: bool = True  # whether a None kind must be reported (False: plainly not a FHIR file)


# ------------------------------------------------------------------------------------------------ entry points
def read_path(path: str | Path, problems: list[InputProblem], limits: Limits | None = None) -> Iterator[Located]:
    """Every resource in a file or a folder of FHIR files (not recursive), in file order.

    A file that cannot be read is reported in ``problems`` and skipped; :class:`InputError` only when nothing
    can be read at all (a missing path, an empty folder, every file unreadable, a single unreadable file).
    """
    limits = limits or Limits.from_env()
    p = Path(path)
    if not os.path.lexists(p):
        raise InputError("no such file or folder", file=str(p))
    if p.is_dir():
        files, skipped = list_folder(p)
        for s in skipped:
            if s.report:
                problems.append(InputProblem(s.path, None, None, None, f"file skipped: {s.reason}"))
        if not files:
            why = "; ".join(f"{s.path}: {s.reason}" for s in skipped if s.report)[:500]
            raise InputError("the folder holds no FHIR files (*.json, *.ndjson, *.jsonl, optionally .gz, or files "
                             "whose content is JSON)" + (f" ({why})" if why else ""), file=str(p))
        used = 0
        first_fault: InputError | None = None
        for f in files:
            try:
                for loc in read_file(f, problems, limits):
                    used += 1
                    yield loc
            except InputError as exc:
                first_fault = first_fault or exc
                problems.append(InputProblem(exc.file or str(f), exc.line, exc.resource, exc.field,
                                             f"file skipped: {exc.reason}"))
        if not used and first_fault is not None:
            raise InputError(f"no file of the folder could be read; first: {first_fault}", file=str(p))
        return
    not_regular = _not_regular(p)
    if not_regular:
        raise InputError(not_regular, file=str(p))
    yielded = 0
    try:
        for loc in read_file(p, problems, limits):
            yielded += 1
            yield loc
    except InputError as exc:
        if not yielded:
            raise
        problems.append(InputProblem.from_error(exc))  # what was read before the fault counts


def read_file(path: Path, problems: list[InputProblem], limits: Limits | None = None) -> Iterator[Located]:
    """The resources of one file; :class:`InputError` when the file cannot be read (nothing in it is FHIR...)."""
    limits = limits or Limits.from_env()
    sn = sniff(path)
    if sn.kind is None:
        raise InputError(sn.reason or "cannot be read", file=str(path))
    if sn.kind == "document":
        yield from read_document(path, problems, limits, gz=sn.gz)
        return
    with _open(path, sn.gz) as fh:
        yield from _file_lines(open_blocks(fh, path, limits, gz=sn.gz), str(path), problems, limits)


def read_resources(obj: Any, problems: list[InputProblem] | None = None) -> Iterator[Located]:
    """Resources of an in-memory input: a Bundle or resource dict, JSON text, or an iterable of dicts.

    Without ``problems``, the first problem raises :class:`~milan_fhir.errors.InputError`.
    """
    sink: list[InputProblem] = [] if problems is None else problems
    if isinstance(obj, (str, bytes, bytearray, memoryview)):
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({_json_fault(exc)})") from None
        if not isinstance(obj, (dict, list)):
            raise InputError(f"not FHIR: the JSON text is {_json_type(obj)}, expected a Bundle or a resource")
    if not isinstance(obj, dict) and (isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable)):
        raise InputError(
            f"cannot read input of type {type(obj).__name__}: expected a path, a Bundle or resource dict, JSON text, "
            "or an iterable of resource dicts"
        )
    items: Iterable[Any] = [obj] if isinstance(obj, dict) else obj
    if isinstance(obj, dict) and not isinstance(obj.get("resourceType"), str):
        raise InputError("not FHIR: a JSON object without resourceType")
    for i, item in enumerate(items):
        line = None if isinstance(obj, dict) else i
        for located in iter_bundle_or_resource(item, sink, None, line):
            yield located
        if problems is None and sink:
            p = sink[0]
            raise InputError(p.reason, line=p.line, resource=p.resource, field=p.field)


# ------------------------------------------------------------------------------------------------ folders, files
def list_folder(folder: Path, *, exclude: Iterable[Path] = ()) -> tuple[list[Path], list[Skipped]]:
    """The files of ``folder`` to read (sorted by name) and the entries skipped, with why. Nothing is opened
    but regular files; hidden entries (``.name``) are passed over."""
    excluded = {os.path.realpath(p) for p in exclude}
    files: list[Path] = []
    skipped: list[Skipped] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(f"cannot list the folder: {exc.strerror or exc}", file=str(folder)) from None
    for name in names:
        if name.startswith("."):
            continue
        f = folder / name
        if excluded and os.path.realpath(f) in excluded:
            continue
        fhir_named = name.lower().endswith(FHIR_SUFFIXES)
        try:
            st = os.stat(f)
        except OSError as exc:
            skipped.append(Skipped(str(f), _stat_fault(f, exc), True))
            continue
        if stat.S_ISDIR(st.st_mode):
            skipped.append(Skipped(str(f), "a folder (folders are not read recursively)", fhir_named))
            continue
        if not stat.S_ISREG(st.st_mode):
            skipped.append(Skipped(str(f), f"not a regular file ({_file_kind(st.st_mode)}); not opened", True))
            continue
        if fhir_named:
            files.append(f)
            continue
        sn = sniff(f)
        if sn.kind is None:
            skipped.append(Skipped(str(f), sn.reason or "not read", sn.report))
        else:
            files.append(f)
    return files, skipped


def sniff(path: Path) -> Sniffed:
    """How a file is read, from its name and its first bytes (after gunzip when it starts with the gzip magic)."""
    why = _not_regular(path)
    if why:
        return Sniffed(None, False, why)
    fhir_named = path.name.lower().endswith(FHIR_SUFFIXES)
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == _GZIP_MAGIC
        head = b""
        with _open(path, gz) as fh:
            read = getattr(fh, "read1", fh.read)  # read1: a damaged gzip tail still gives its head
            try:
                while len(head) < _SNIFF_BYTES or not head.strip():
                    more = read(_SNIFF_BYTES)
                    if not more:
                        break
                    head += more
                    if b"\n" in head.lstrip() or len(head) > 16 * _SNIFF_BYTES:
                        break
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                if not head.strip():
                    return Sniffed(None, True, f"not a valid gzip file ({exc})")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return Sniffed(None, True, f"not a valid gzip file ({exc})")
    except OSError as exc:
        return Sniffed(None, False, f"cannot be read ({exc.strerror or exc})")
    text = head[3:] if head.startswith(BOM) else head
    stripped = text.lstrip()
    if not stripped:
        return Sniffed(None, gz, "empty file", report=fhir_named)  # an empty FHIR-named file is reported
    if stripped[:1] not in (b"{", b"["):
        if fhir_named:  # read it, so that the fault is the parser's ("not valid JSON", "not FHIR: a string")
            return Sniffed("document", gz)
        return Sniffed(None, gz, "not JSON (does not start with { or [)", report=False)
    m = _FIRST_TYPE.search(stripped[:4096].split(b"\n", 1)[0])
    first_type = m.group(1).decode() if m else None
    if path.name.lower().endswith(_NDJSON_SUFFIXES):
        return Sniffed("lines", gz, first_type=first_type)
    nl = stripped.find(b"\n")
    if nl < 0:
        return Sniffed("lines", gz, first_type=first_type)  # one line (or longer than the sniff): read as lines
    first = stripped[:nl].strip()
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return Sniffed("document", gz, first_type=first_type)
    if isinstance(obj, dict):
        return Sniffed("lines", gz, first_type=first_type)
    return Sniffed("document", gz, first_type=first_type)


def _open(path: Path, gz: bool) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if gz else open(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def open_blocks(fh: BinaryIO, path: Path | str, limits: Limits, *, gz: bool, start: int = 0,
                end: int | None = None) -> Iterator[bytes]:
    """The bytes of ``fh`` in blocks: ``[start, end)`` of a plain file, or a whole gzip stream (inflation
    capped by ``limits``). Read faults raise :class:`InputError` naming the file."""
    try:
        if not gz:
            fh.seek(start)
            remaining = (end - start) if end is not None else None
            while remaining is None or remaining > 0:
                data = fh.read(_BLOCK if remaining is None else min(_BLOCK, remaining))
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data
            return
        cap = max(limits.max_line_bytes, limits.max_gzip_ratio * max(1, os.path.getsize(path)))
        total = 0
        read = getattr(fh, "read1", fh.read)  # read1: what one read decompresses, so a damaged tail keeps the rest
        while True:
            data = read(_BLOCK)
            if not data:
                return
            total += len(data)
            if total > cap:
                yield data[: len(data) - (total - cap)]
                raise InputError(f"the gzip file inflates to more than {limits.max_gzip_ratio} times its size "
                                 f"({cap:,} bytes); the rest is not read (MILAN_FHIR_MAX_GZIP_RATIO)", file=str(path))
            yield data
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InputError(f"not a valid gzip file ({exc})", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


# ------------------------------------------------------------------------------------------------ lines
def split_lines(blocks: Iterable[bytes], max_line: int) -> Iterator[list[bytes]]:
    """Lines of a stream of byte blocks, in lists (one per block; no newline; blank lines kept, for numbering).

    A line longer than ``max_line`` comes as an :class:`Oversize` in its place; its bytes are dropped as they are
    read, so memory stays within one block plus ``max_line``.
    """
    tail = b""
    pieces: list[bytes] = []  # a line that spans blocks: its start (tail), then whole blocks; joined when it ends
    held = 0  # bytes in pieces
    skipping = -1  # bytes of an oversize line seen so far, or -1
    for data in blocks:
        if skipping >= 0:
            i = data.find(b"\n")
            if i < 0:
                skipping += len(data)
                continue
            yield [Oversize(skipping + i)]
            skipping = -1
            data = data[i + 1:]
        if b"\n" not in data:
            if not pieces:
                pieces, held, tail = [tail], len(tail), b""
            pieces.append(data)
            held += len(data)
            if held > max_line:
                skipping, pieces, held = held, [], 0
            yield []
            continue
        if pieces:
            tail, pieces, held = b"".join(pieces), [], 0
        joined = len(tail) + len(data)
        lines = (tail + data).split(b"\n") if tail else data.split(b"\n")
        tail = lines.pop()
        if len(tail) > max_line:
            skipping, tail = len(tail), b""
        if joined > max_line:  # a line of this block (or one begun in the last) may be over the limit
            lines = [ln if len(ln) <= max_line else Oversize(len(ln)) for ln in lines]
        yield lines
    if pieces:
        tail = b"".join(pieces)
    if skipping >= 0:
        yield [Oversize(skipping)]
    elif tail:
        yield [tail]


def line_blocks(blocks: Iterable[bytes], max_line: int) -> Iterator[tuple[bytes, int, int] | Oversize]:
    """The lines of a stream of byte blocks as runs, without a Python object per line: each item is
    ``(buf, start, stop)``, the whole lines ``buf[start:stop]`` (every one ending with ``\\n``; the stream's last
    line gets one; ``buf`` may hold more bytes around them, which belong to other items), or an :class:`Oversize`
    standing for one line longer than ``max_line`` (its bytes dropped as they are read). The same lines as
    :func:`split_lines`; the cohort searches each run at once (``RawPrefilter.lines``). A read block is not
    copied: only a line cut by a block boundary is."""
    pieces: list[bytes] = []  # the start of a line cut by block boundaries
    held = 0  # bytes in pieces
    skipping = -1  # bytes of an oversize line seen so far, or -1
    for data in blocks:
        off = 0
        if skipping >= 0:
            i = data.find(b"\n")
            if i < 0:
                skipping += len(data)
                continue
            yield Oversize(skipping + i)
            skipping = -1
            off = i + 1
        first = data.find(b"\n", off)
        if first < 0:  # the line goes on: its pieces are joined once, when it ends
            if off < len(data):
                pieces.append(data[off:])
                held += len(data) - off
            if held > max_line:
                skipping, pieces, held = held, [], 0
            continue
        if pieces:  # the line begun in an earlier block
            pieces.append(data[off:first + 1])
            line = b"".join(pieces)
            pieces, held = [], 0
            if len(line) - 1 > max_line:
                yield Oversize(len(line) - 1)
            else:
                yield line, 0, len(line)
            off = first + 1
        cut = data.rfind(b"\n") + 1
        if cut > off:
            if cut - off > max_line:
                yield from _cut_oversize(data[off:cut], max_line)
            else:
                yield data, off, cut
        held = len(data) - cut
        pieces = [data[cut:]] if held else []
        if held > max_line:
            skipping, pieces, held = held, [], 0
    if skipping >= 0:
        yield Oversize(skipping)
    elif pieces:
        last = b"".join(pieces) + b"\n"
        yield last, 0, len(last)


def _cut_oversize(run: bytes, max_line: int) -> Iterator[tuple[bytes, int, int] | Oversize]:
    """A run of lines, with each line longer than ``max_line`` replaced by an :class:`Oversize`."""
    pending: list[bytes] = []
    for line in run.split(b"\n")[:-1]:
        if len(line) > max_line:
            if pending:
                joined = b"\n".join(pending) + b"\n"
                yield joined, 0, len(joined)
                pending = []
            yield Oversize(len(line))
        else:
            pending.append(line)
    if pending:
        joined = b"\n".join(pending) + b"\n"
        yield joined, 0, len(joined)


def clean_line(raw: bytes) -> bytes:
    """A line without surrounding blanks (``\\r`` included) and without a UTF-8 byte-order mark."""
    line = raw.strip()
    if line.startswith(BOM):
        line = line[3:].strip()
    return line


def line_resources(raw: bytes, file: str | None, number: int, problems: list[InputProblem],
                   limits: Limits | None = None) -> Iterator[Located]:
    """The resources of one NDJSON line (a resource, or a Bundle's entries); a bad line is one problem."""
    if isinstance(raw, Oversize):
        lim = (limits or Limits()).max_line_bytes
        problems.append(InputProblem(file, number, None, None, f"line of {raw.size} bytes is longer than the limit of "
                                     f"{lim} bytes (MILAN_FHIR_MAX_LINE_BYTES); not read"))
        return
    line = clean_line(raw)
    if not line:
        return
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        problems.append(InputProblem(file, number, None, None, f"not valid JSON ({_json_fault(exc, line_known=True)})"))
        return
    yield from iter_bundle_or_resource(obj, problems, file, number, scope=object())


def _file_lines(blocks: Iterable[bytes], file: str, problems: list[InputProblem], limits: Limits) -> Iterator[Located]:
    """Every line of a file; when no line at all is FHIR, the file is one fault (InputError) instead."""
    good = False
    held: list[InputProblem] = []  # problems of the lines before the first good one (at most 1000 kept)
    held_more = 0
    number = 0
    for block in split_lines(blocks, limits.max_line_bytes):
        for raw in block:
            number += 1
            if good:
                yield from line_resources(raw, file, number, problems, limits)
                continue
            sink: list[InputProblem] = []
            found = list(line_resources(raw, file, number, sink, limits))
            if found:
                good = True
                problems.extend(held)
                if held_more:
                    problems.append(InputProblem(file, None, None, None,
                                                 f"... and {held_more} more bad lines before line {number}"))
                problems.extend(sink)
                yield from found
            elif len(held) < 1000:
                held.extend(sink)
            else:
                held_more += len(sink)
    if not good and held:
        first = held[0]
        n = len(held) + held_more
        raise InputError(f"no line is a FHIR resource; first fault at line {first.line}: {first.reason}"
                         + (f" ({n} bad lines)" if n > 1 else ""), file=file)


# ------------------------------------------------------------------------------------------------ documents
def read_document(path: Path, problems: list[InputProblem], limits: Limits, *, gz: bool | None = None) -> Iterator[Located]:
    """A whole-file JSON value (a Bundle or one resource), at most ``limits.max_line_bytes`` once decompressed."""
    if gz is None:
        gz = sniff(path).gz
    file = str(path)
    with _open(path, gz) as fh:
        parts: list[bytes] = []
        size = 0
        for data in open_blocks(fh, path, limits, gz=gz):
            size += len(data)
            if size > limits.max_line_bytes:
                raise InputError(f"the file is larger than the limit of {limits.max_line_bytes} bytes for one JSON "
                                 "value (MILAN_FHIR_MAX_LINE_BYTES); not read", file=file)
            parts.append(data)
    data = b"".join(parts)
    del parts
    body = data[3:] if data.startswith(BOM) else data
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({_json_fault(exc)})", file=file) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str) or not obj["resourceType"]:
        what = "a JSON object without resourceType" if isinstance(obj, dict) else f"a JSON {_json_type(obj)}"
        raise InputError(f"not FHIR: found {what}, expected a Bundle or a resource", file=file)
    start = 1 + body.count(b"\n", 0, len(body) - len(body.lstrip()))
    lines = entry_lines(body) if obj["resourceType"] == "Bundle" else None
    yield from iter_bundle_or_resource(obj, problems, file, start, lines, scope=object())


_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|[^\s,:\[\]{}"]+')
_FIRST_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')


def entry_lines(data: bytes) -> list[int] | None:
    """The line (1-based) where each element of the top-level object's ``entry`` array starts; None when the
    text is not shaped so (the caller then uses the Bundle's line). One pass over the tokens, no recursion."""
    depth = 0
    after_entry_key = False
    in_entry = False
    starts: list[int] | None = None
    line, pos = 1, 0
    for m in _TOKEN.finditer(data):
        tok = m.group()
        c = tok[0]
        if in_entry and depth == 2 and c != 93:  # 93 "]": any other token at array level starts an element
            off = m.start()
            line += data.count(b"\n", pos, off)
            pos = off
            starts.append(line)  # type: ignore[union-attr]
        if c in (123, 91):  # "{" "["
            if after_entry_key and c == 91 and depth == 1:
                in_entry, starts = True, []
            depth += 1
        elif c in (125, 93):  # "}" "]"
            depth -= 1
            if in_entry and depth == 1:
                in_entry = False
        after_entry_key = depth == 1 and tok == b'"entry"'
    return starts


# ------------------------------------------------------------------------------------------------ internals
def _not_regular(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError as exc:
        return _stat_fault(path, exc)
    if stat.S_ISDIR(st.st_mode):
        return None if path.is_dir() else "a folder"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_file_kind(st.st_mode)}); not opened"
    return None


def _stat_fault(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return f"a broken symbolic link (to {os.readlink(path)!r})"
    return f"cannot be read ({exc.strerror or exc})"


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _json_fault(exc: orjson.JSONDecodeError, line_known: bool = False) -> str:
    if line_known:
        return f"{exc.msg} at column {exc.colno}"
    return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(obj), "null" if obj is None else type(obj).__name__
    )
