"""The two stages a cohort run is made of, as top-level functions that worker processes (spawn-safe) run.

Stage 1, :func:`scan_chunk`: read one chunk of an NDJSON file as bytes, in blocks of whole lines; one search
over each block (:meth:`RawPrefilter.lines`, in compiled code) gives the lines the rules could use and the lines
not shaped as one JSON object (:func:`select_lines`); parse only those with orjson (no other line becomes a
Python object); turn them into compact facts with :func:`adapt_resource`; spill the :class:`Adapted` objects to the work folder, one
section per patient bucket (``crc32(patient) % buckets``). Malformed lines and invalid resources are written to
the chunk's error file; the run goes on.

Stage 2, :func:`evaluate_bucket`: read one bucket's sections from every chunk (in chunk order, so the first copy
of a duplicated resource wins whatever the number of workers), build each patient's :class:`PatientRecord`,
evaluate the patients of the cohort and write their JSON line and RiskAssessment into part files sorted by
patient; return the bucket's :class:`Tally`.

Memory: one read block of a chunk (2 MB), at most ``_SPILL_FACTS`` facts of the scan (then written out as one
frame per bucket) and the facts of one bucket at a time, whatever the input size.
Every file of the work folder is written to a temporary name and renamed when complete, so a run that stops
half-way leaves only complete pieces behind (which ``--resume`` reuses).
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np
import orjson

from .. import _sources
from .._domain import PatientRecord
from .._sources import Limits
from ..errors import InputError
from ._files import Chunk
from ._group import evaluate_patients, gather, in_cohort
from ._tally import Tally

#: facts a chunk's scan holds in memory before writing them out: memory stays bounded whatever the chunk size
#: (a chunk of Patient lines keeps every line)
_SPILL_FACTS = 4_000  # about 3 KB each in memory (a Patient's facts)

__all__ = ["ScanTask", "ScanResult", "BucketTask", "BucketResult", "scan_chunk", "evaluate_bucket", "bucket_of",
           "in_cohort", "write_atomic", "chunk_name", "watch_parent", "order_key", "read_scan_result",
           "read_scan_errors"]

_SETTINGS: dict[tuple[str, ...], Any] = {}


def _mappings(layers: tuple[str, ...]) -> Any:
    """The mappings of this run, loaded once per process."""
    m = _SETTINGS.get(layers)
    if m is None:
        from .._mappings import default_mappings, load_mappings

        m = _SETTINGS[layers] = load_mappings(*layers) if layers else default_mappings()
        _prefilter(layers)  # compiled here, before helpers fork (the run's warm-up loads the mappings)
    return m


def _prefilter(layers: tuple[str, ...]) -> Any:
    """The prefilter of this run's mappings, built once per process."""
    key = ("prefilter", *layers)
    pf = _SETTINGS.get(key)
    if pf is None:
        from .._adapters import RawPrefilter

        pf = _SETTINGS[key] = RawPrefilter(_mappings(layers))
    return pf


@dataclass
class LineScan:
    """What :func:`select_lines` saw: every line (blank ones included, for absolute line numbers), and whether
    a line it passed over names a ``"resourceType"`` (the file is FHIR, whatever is reported about others)."""

    lines: int = 0
    fhir: bool = False


def select_lines(runs: Iterable[Any], prefilter: Any, scan: LineScan) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, line, wanted)`` of each line the cohort reads with ``_sources.line_resources``: the
    lines shaped as one JSON object that the prefilter keeps (``wanted``), and every other line that is not
    blank (misshapen or oversize: the shared reader reports what it is). ``runs`` come from
    ``_sources.line_blocks``; one search over each run (``RawPrefilter.lines``) finds the lines, no other line
    is touched in Python. Each line is cleaned (blanks, byte-order mark) as ``evaluate`` does."""
    for run in runs:
        if type(run) is not tuple:  # an Oversize line
            scan.lines += 1
            yield scan.lines, run, False
            continue
        buf, start, stop = run
        base = scan.lines
        picked = prefilter.lines(buf, start, stop)
        newlines = _newlines(buf, start, stop)
        before = np.searchsorted(newlines, [s for s, _e in picked]).tolist()  # line numbers by counting
        for (s, e), n in zip(picked, before):
            line = buf[s:e]
            if line[0] != 123 or line[-1] != 125:  # 123 "{", 125 "}"
                line = _sources.clean_line(line)
                if not line:
                    continue
                if line[0] != 123 or line[-1] != 125:  # not one JSON object on one line
                    yield base + n + 1, line, False
                    continue
                if not prefilter.wants(line):
                    scan.fhir = scan.fhir or b'"resourceType"' in line
                    continue
            yield base + n + 1, line, True
        scan.lines = base + len(newlines)
        if not scan.fhir:  # until one is seen: is any line of this file FHIR at all?
            scan.fhir = _unpicked_type(buf, start, stop, picked)


_WINDOW = 1 << 20  # bytes searched for newlines at a time (a window's temporary array, not the run's)


def _newlines(buf: bytes, start: int, stop: int) -> Any:
    """The offsets of the newlines of ``buf[start:stop]``, increasing (a numpy array)."""
    parts = []
    for lo in range(start, stop, _WINDOW):
        hi = min(stop, lo + _WINDOW)
        parts.append(np.flatnonzero(np.frombuffer(buf, np.uint8, hi - lo, lo) == 10) + lo)  # 10 "\n"
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _unpicked_type(buf: bytes, start: int, stop: int, picked: list[tuple[int, int]]) -> bool:
    """Whether a line of ``buf[start:stop]`` other than the ``picked`` ones names a ``"resourceType"``."""
    i = 0
    p = buf.find(b'"resourceType"', start, stop)
    while p >= 0:
        while i < len(picked) and picked[i][1] < p:
            i += 1
        if i == len(picked) or p < picked[i][0]:
            return True
        p = buf.find(b'"resourceType"', picked[i][1], stop)
    return False


def read_document_piece(path: str, limits: Limits, gz: bool
                        ) -> tuple[list[Any], list[Any], tuple[int | None, str, str | None, str | None] | None, int]:
    """A whole-file JSON document as both engines' scans read it: ``(entries, problems, skip, lines)``, where
    ``skip`` is the error ``(line, reason, resource, field)`` of a file that cannot be read at all (then no
    entries), and ``lines`` the last line an entry starts on."""
    problems: list[Any] = []
    try:
        located = list(_sources.read_document(Path(path), problems, limits, gz=gz))
    except InputError as exc:
        return [], problems, (exc.line, f"file skipped: {exc.reason}", exc.resource, exc.field), 0
    return located, problems, None, max((loc.line or 0 for loc in located), default=0)


def _runs(chunk: Chunk, limits: Limits) -> Iterator[Any]:
    """The lines of a ``lines`` chunk as runs of whole lines (``_sources.line_blocks``); read faults raise
    :class:`InputError`."""
    import gzip

    _sources.keep_read_blocks()
    try:
        fh: BinaryIO = gzip.open(chunk.path, "rb") if chunk.gz else open(chunk.path, "rb")  # type: ignore[assignment]
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=chunk.path) from None
    with fh:
        blocks = _sources.open_blocks(fh, chunk.path, limits, gz=chunk.gz, start=chunk.start,
                                      end=None if chunk.end < 0 else chunk.end)
        yield from _sources.line_blocks(blocks, limits.max_line_bytes)


def bucket_of(patient: str, buckets: int) -> int:
    return zlib.crc32(patient.encode("utf-8")) % buckets


def chunk_name(index: int) -> str:
    return f"c{index:06d}"


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """A work piece (or, ``durable=True``, an output): temporary name, rename, no symlink followed, private mode
    (:mod:`milan_fhir._sink`). Work pieces skip fsync: a killed process loses nothing the kernel holds, and
    ``--resume`` re-checks every piece anyway."""
    from .._sink import write_bytes

    write_bytes(path, data, durable=durable)


def watch_parent(parent: int) -> None:
    """Run in each helper process as it starts: the helper ends when the cohort run's main process dies (Linux:
    ``PR_SET_PDEATHSIG``; elsewhere a thread that notices the parent is gone), so a killed run leaves no helper
    working behind it."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="milan-fhir-parent-watch", daemon=True).start()


# ------------------------------------------------------------------------------------------------ stage 1
@dataclass(frozen=True)
class ScanTask:
    chunk: Chunk
    workdir: str
    buckets: int
    mapping_layers: tuple[str, ...]
    limits: Limits = Limits()


@dataclass
class ScanResult:
    index: int
    lines: int  # every line of the chunk, blank ones included (for absolute line numbers)
    parsed: int  # lines the prefilter let through
    kept: int  # resources the rules use
    errors: int
    nbytes: int
    fhir: bool = True  # some line of the chunk is a FHIR resource (else, for a whole file: reported as not FHIR)


def _error(rel: int | None, seq: int, reason: str, resource: str | None = None, field: str | None = None) -> bytes:
    return orjson.dumps({"line": rel, "seq": seq, "reason": reason, "resource": resource, "field": field}) + b"\n"


def order_key(chunk: int, rel: int, seq: int) -> str:
    """Where an error or fact of a chunk stands in file order: chunk, line, then the order the scan met it
    (errors and facts counted together, so that the entries of a one-line Bundle keep their order)."""
    return f"{chunk:06d}:{rel:012d}:{seq:09d}"


def scan_chunk(task: ScanTask) -> ScanResult:
    """Stage 1 for one chunk (see the module docstring); writes one piece, ``cNNNNNN.facts``: the facts (one
    pickled frame per bucket and spill), the errors, and the chunk's record at the end (:func:`read_scan_result`).

    Lines are cut and read by the same functions as ``evaluate`` (``_sources.split_lines``,
    ``_sources.line_resources``, ``_sources.read_document``); only the prefilter comes in between.
    """
    from .._adapters import Located, adapt_resource, full_url_map
    from .._adapters._guard import printable, shallow_text

    mappings = _mappings(task.mapping_layers)
    prefilter = _prefilter(task.mapping_layers)
    limits = task.limits
    chunk = task.chunk
    path = chunk.path
    nb = task.buckets
    sections: list[list[tuple[Any, int, int]]] = [[] for _ in range(nb)]
    errors: list[bytes] = []
    rel = parsed = kept = seq = held = 0
    frames: list[list[tuple[int, int]]] = [[] for _ in range(nb)]  # (offset, length) of each bucket's frames
    fhir = False

    def error(line_no: int | None, reason: str, resource: str | None = None, field: str | None = None) -> None:
        nonlocal seq
        seq += 1
        errors.append(_error(line_no, seq, reason, resource, field))

    def fact(ad: Any, line_no: int) -> None:
        nonlocal seq, held
        seq += 1
        sections[zlib.crc32(ad.patient.encode("utf-8")) % nb].append((ad, line_no, seq))
        held += 1
        if held >= _SPILL_FACTS:
            spill()

    def spill() -> None:
        """Write the facts held so far, one frame per bucket, to the chunk's facts file."""
        nonlocal held
        for b, section in enumerate(sections):
            if section:
                start = facts.tell()
                pickle.dump(section, facts, protocol=pickle.HIGHEST_PROTOCOL)
                frames[b].append((start, facts.tell() - start))
                sections[b] = []
        held = 0

    def adapt(obj: dict[str, Any], line_no: int, resolve: Any = None, full_url: str | None = None,
              shallow: bool = False) -> None:
        nonlocal kept
        try:
            ad = adapt_resource(obj, mappings, resolve=resolve, located=Located(obj, path, line_no, full_url),
                                defer_patient=True, shallow=shallow)
        except InputError as exc:
            error(line_no, exc.reason, exc.resource, exc.field)
            ad = getattr(exc, "adapted", None)  # an invalid resource of a criterion's kind still caps it (v2 §6)
            if ad is not None:
                fact(ad, line_no)
            return
        except Exception as exc:  # noqa: BLE001 - one resource must not stop a cohort run; reported, not silent
            key = _key(obj)
            error(line_no, f"could not be read because of an internal error ({type(exc).__name__}: "
                           f"{printable(str(exc), 200)}); please report it", key and printable(key))
            return
        if ad is None:
            return
        kept += 1
        fact(ad, line_no)

    def adapt_all(located: list[Any], problems: list[Any], shallow: bool = False) -> None:
        nonlocal fhir
        fhir = fhir or bool(located)
        for p in problems:
            error(p.line, p.reason, p.resource, p.field)
        if len(located) == 1 and located[0].full_url is None:
            adapt(located[0].resource, located[0].line, shallow=shallow)
            return
        urls = full_url_map(located)  # the entries of one Bundle resolve each other's fullUrl
        for loc in located:
            adapt(loc.resource, loc.line, urls, loc.full_url, shallow)

    from .._sink import atomic_open

    wd = Path(task.workdir)
    name = chunk_name(chunk.index)
    with atomic_open(wd / f"{name}.facts", durable=False) as facts:
        try:
            if chunk.kind == "document":
                located, problems, skip, rel = read_document_piece(path, limits, chunk.gz)
                if skip is not None:
                    error(*skip)
                parsed = len(located)
                adapt_all(located, problems)
                fhir = True  # a document that is not FHIR was reported above
            else:
                scan = LineScan()
                try:
                    for number, line, wanted in select_lines(_runs(chunk, limits), prefilter, scan):
                        parsed += wanted
                        problems = []
                        adapt_all(list(_sources.line_resources(line, path, number, problems, limits)), problems,
                                  type(line) is bytes and shallow_text(line))  # else an Oversize stand-in
                finally:
                    rel = scan.lines
                    fhir = fhir or scan.fhir
        except InputError as exc:  # a damaged gzip file: what was read counts, the rest is reported
            error(rel + 1, f"the file cannot be read further: {exc.reason}")

        spill()
        # the piece's tail: its errors, then its record (result, frame index, where the errors are), then the
        # record's length; the file is renamed into place only now, so its presence means the chunk is done
        errors_at = facts.tell()
        blob = b"".join(errors)
        facts.write(blob)
        result = ScanResult(chunk.index, rel, parsed, kept, len(errors), chunk.nbytes, fhir)
        record = pickle.dumps((result, [tuple(f) for f in frames], errors_at, len(blob)),
                              protocol=pickle.HIGHEST_PROTOCOL)
        facts.write(record + _TAIL.pack(len(record)))
    return result


_TAIL = struct.Struct("<Q")


def _record(workdir: Path, index: int) -> tuple[ScanResult, list[tuple[tuple[int, int], ...]], int, int]:
    """A finished chunk's record, read from the end of its piece (see :func:`scan_chunk`)."""
    with open(workdir / f"{chunk_name(index)}.facts", "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end < _TAIL.size:
            raise EOFError("a piece too short to be whole")
        fh.seek(end - _TAIL.size)
        (n,) = _TAIL.unpack(fh.read(_TAIL.size))
        if n > end - _TAIL.size:
            raise EOFError("a piece whose record does not fit")
        fh.seek(end - _TAIL.size - n)
        record: tuple[ScanResult, list[tuple[tuple[int, int], ...]], int, int] = pickle.loads(fh.read(n))
        return record


def read_scan_result(workdir: Path, index: int) -> tuple[ScanResult, list[tuple[tuple[int, int], ...]]] | None:
    """A finished chunk's result and frame index; None when its piece is missing or not whole."""
    try:
        result, frames, _at, _n = _record(workdir, index)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, struct.error):
        return None
    return result, frames


def read_scan_errors(workdir: Path, index: int) -> bytes:
    """A finished chunk's error lines (JSON, one per line, in scan order)."""
    _result, _frames, at, n = _record(workdir, index)
    with open(workdir / f"{chunk_name(index)}.facts", "rb") as fh:
        fh.seek(at)
        return fh.read(n)


def _key(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("resourceType"), str) and isinstance(obj.get("id"), str):
        return f"{obj['resourceType']}/{obj['id']}"
    return None


# ------------------------------------------------------------------------------------------------ stage 2
@dataclass(frozen=True)
class BucketTask:
    bucket: int
    workdir: str
    chunks: tuple[tuple[int, str, int], ...]  # (chunk index, file, lines of the file before the chunk)
    sections: tuple[tuple[tuple[int, int], ...], ...]  # per chunk: (offset, length) of this bucket's frames
    as_of: dt.date
    rule_set: str | None
    mapping_layers: tuple[str, ...]
    all_patients: bool
    keep_evaluations: bool = False  # for write-back: pickled to bNNNNN.evals


@dataclass
class BucketResult:
    bucket: int
    tally: Tally
    patients_seen: int
    errors: int


def bucket_name(bucket: int) -> str:
    return f"b{bucket:05d}"


def _sections(task: BucketTask) -> Iterator[tuple[tuple[int, str, int], list[tuple[Any, int, int]]]]:
    wd = Path(task.workdir)
    for meta, frames in zip(task.chunks, task.sections):
        if not frames:
            continue
        with open(wd / f"{chunk_name(meta[0])}.facts", "rb") as fh:
            for offset, length in frames:
                fh.seek(offset)
                yield meta, pickle.loads(fh.read(length))


def evaluate_bucket(task: BucketTask) -> BucketResult:
    """Stage 2 for one bucket: part files ``bNNNNN.results``, ``.ra``, ``.errors`` (each line ``key\\tjson``)."""
    mappings = _mappings(task.mapping_layers)
    rules = mappings.rule_set(task.rule_set)
    records: dict[str, PatientRecord] = {}
    dup_errors = gather(records, ((ad, file, line0 + rel, order_key(ci, rel, seq))
                                  for (ci, file, line0), section in _sections(task) for ad, rel, seq in section),
                        all_patients=task.all_patients)
    tally = Tally()
    results: list[bytes] = []
    ras: list[bytes] = []
    evals: list[Any] = []
    for patient, ev, line, ra in evaluate_patients(records, rules, task.as_of, mappings, task.all_patients):
        key = patient.encode("utf-8") + b"\t"
        results.append(key + line + b"\n")
        ras.append(key + ra + b"\n")
        tally.add_evaluation(ev)
        if task.keep_evaluations:
            evals.append(ev)
    wd = Path(task.workdir)
    name = bucket_name(task.bucket)
    if task.keep_evaluations:
        write_atomic(wd / f"{name}.evals", pickle.dumps(evals, protocol=pickle.HIGHEST_PROTOCOL))
    write_atomic(wd / f"{name}.results", b"".join(results))
    write_atomic(wd / f"{name}.ra", b"".join(ras))
    dup_errors.sort()
    write_atomic(wd / f"{name}.errors", b"".join(k.encode() + b"\t" + v + b"\n" for k, v in dup_errors))
    result = BucketResult(task.bucket, tally, len(records), len(dup_errors))
    write_atomic(wd / f"{name}.done", pickle.dumps(result))
    return result


def read_bucket_result(workdir: Path, bucket: int) -> BucketResult | None:
    try:
        finished: BucketResult = pickle.loads((workdir / f"{bucket_name(bucket)}.done").read_bytes())
        return finished
    except (OSError, pickle.UnpicklingError, EOFError):
        return None
