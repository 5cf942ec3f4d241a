"""What the Spark executors run, one Arrow batch stream per partition (``mapInArrow``). No pyspark import here.

Scan (:func:`scan_partition`): the rows of a partition are the lines of one or more file splits, each split in
its file's order, as ``(file_rank, start, value)``: the file's rank in the input order, the byte offset of the
split (``input_file_block_start``) and the line's bytes. The lines of a split in a batch are joined into one
buffer and go through what the local engine's scan does with its blocks (``milan_fhir._cohort._work``:
``select_lines``, i.e. :class:`RawPrefilter` over the buffer, then the shared line reader ``_sources.line_resources``
and ``adapt_resource`` for the lines it picks). Out come compact facts
(the pickled :class:`Adapted`, keyed by patient), errors, and one count row per split, each with its place
``(file_rank, start, seq)`` and the line's number in its split (``rel``): the driver adds the lines of the
earlier splits of the same file to get the line number in the file, as the local engine does per chunk.

Scan of local files (:func:`scan_chunks`): each row names a piece the driver planned (a byte range of an NDJSON
file, or a whole gzip file or JSON document); the task reads it itself with the local engine's chunk reader and
gives the same rows as above, with the piece's offset as its ``start``.

Group/evaluate (:func:`evaluate_partition`): the facts arrive sorted by ``(patient, file_rank, start, seq)``,
i.e. per patient in file order, then line order: :func:`milan_fhir._cohort._group.gather` (first copy wins) and
``evaluate_patients`` then give the bytes the local engine writes, whatever the partitioning.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Settings", "scan_partition", "scan_chunks", "evaluate_partition", "SCAN_SCHEMA", "EVAL_SCHEMA", "FACT", "ERROR",
           "COUNT", "RESULT", "DUPLICATE", "TALLY"]

FACT, ERROR, COUNT = 0, 1, 2
RESULT, DUPLICATE, TALLY = 0, 1, 2

SCAN_SCHEMA = ("kind byte, file_rank int, start long, seq long, rel long, patient string, payload binary")
EVAL_SCHEMA = ("kind byte, patient string, verdict string, result binary, risk_assessment binary, evaluation binary, "
               "file_rank int, start long, rel long, seq long, payload binary")
_BATCH = 4096


@dataclass(frozen=True)
class Settings:
    """What the executors need, pickled into the tasks: the mappings themselves (the executors need not see the
    driver's files), the file names as the outputs show them, and the evaluation settings."""

    mappings: Any
    files: tuple[str, ...]  # display name of each file rank
    rank_of: dict[str, int]  # file rank of each name the scan input gives (a file URI, or a DataFrame's file)
    max_line_bytes: int
    as_of: Any = None
    rule_set: str | None = None
    all_patients: bool = False
    keep_evaluations: bool = False
    frame: bool = False  # a DataFrame of lines: each row's ``start`` is its line number - 1
    #: the pieces the executors read themselves (:func:`scan_chunks`): ``(file_rank, path, start, end, gz, kind)``,
    #: ``end`` -1 for a whole file, ``kind`` "lines" (NDJSON) or "document" (one JSON value, as the local engine)
    chunks: tuple[tuple[int, str, int, int, bool, str], ...] = ()
    limits: Any = None  # the driver's input limits (``_sources.Limits``); None: the defaults with max_line_bytes


_CACHE: dict[str, Any] = {}


def _prefilter(settings: Settings) -> Any:
    """The prefilter of these mappings, built once per Python worker (Spark reuses workers between tasks)."""
    key = settings.mappings.fingerprint()
    pf = _CACHE.get(key)
    if pf is None:
        from .._adapters import RawPrefilter

        pf = _CACHE[key] = RawPrefilter(settings.mappings)
    return pf


def _table(columns: dict[str, list[Any]], schema: Any) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information

    return pa.RecordBatch.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


def _arrow_schema(ddl: str) -> Any:
    import pyarrow as pa

    kinds = {"byte": pa.int8(), "int": pa.int32(), "long": pa.int64(), "string": pa.string(), "binary": pa.binary()}
    fields = []
    for part in ddl.split(","):
        name, kind = part.split()
        fields.append(pa.field(name, kinds[kind]))
    return pa.schema(fields)


class _Out:
    """Rows gathered column-wise, flushed as Arrow batches."""

    def __init__(self, ddl: str) -> None:
        self.schema = _arrow_schema(ddl)
        self.names = [f.name for f in self.schema]
        self.cols: dict[str, list[Any]] = {n: [] for n in self.names}

    def add(self, *values: Any) -> None:
        for n, v in zip(self.names, values, strict=True):
            self.cols[n].append(v)

    def __len__(self) -> int:
        return len(self.cols[self.names[0]])

    def flush(self) -> Iterator[Any]:
        if len(self):
            yield _table(self.cols, self.schema)
            self.cols = {n: [] for n in self.names}


class _Split:
    """The scan of one file split: the local engine's per-line steps, with the split's counters."""

    def __init__(self, rank: int, start: int, settings: Settings, out: _Out) -> None:
        self.rank, self.start, self.out = rank, start, out
        self.frame = settings.frame
        self.path = settings.files[rank]
        self.mappings = settings.mappings
        self.prefilter = _prefilter(settings)
        self.wants = self.prefilter.wants
        from .. import _sources

        self.limits = settings.limits or _sources.Limits(max_line_bytes=settings.max_line_bytes)
        self.max_line = self.limits.max_line_bytes
        self.clean_line, self.line_resources, self.oversize = _sources.clean_line, _sources.line_resources, _sources.Oversize
        self.rel = self.parsed = self.kept = self.seq = self.lines = self.errors = 0
        self.fhir = False
        from .._cohort._work import LineScan

        self.scan = LineScan()  # the bulk path's line count and FHIR flag (:meth:`runs`)

    def move(self, start: int) -> None:
        """A DataFrame of lines: the next row is line ``start + 1`` of the same file (its own one-line split)."""
        self.start, self.rel, self.seq = start, 0, 0

    def _emit(self, kind: int, rel: int | None, patient: str | None, payload: bytes) -> None:
        self.seq += 1
        self.out.add(kind, self.rank, self.start, self.seq, rel, patient, payload)

    def _error(self, rel: int | None, reason: str, resource: str | None = None, field: str | None = None) -> None:
        self.errors += 1
        self._emit(ERROR, rel, None, orjson.dumps({"resource": resource, "field": field, "reason": reason}))

    def _fact(self, ad: Any, rel: int) -> None:
        self._emit(FACT, rel, ad.patient, pickle.dumps(ad, protocol=pickle.HIGHEST_PROTOCOL))

    def _adapt(self, obj: dict[str, Any], line_no: int, resolve: Any = None, full_url: str | None = None,
               shallow: bool = False) -> None:
        from .._adapters import Located, adapt_resource
        from .._adapters._guard import printable
        from ..errors import InputError

        try:
            ad = adapt_resource(obj, self.mappings, resolve=resolve, located=Located(obj, self.path, line_no, full_url),
                                defer_patient=True, shallow=shallow)
        except InputError as exc:
            self._error(line_no, exc.reason, exc.resource, exc.field)
            ad = getattr(exc, "adapted", None)  # an invalid resource of a criterion's kind still caps it (v2 §6)
            if ad is not None:
                self._fact(ad, line_no)
            return
        except Exception as exc:  # noqa: BLE001 - one resource must not stop a run; reported, not silent
            key = _key(obj)
            self._error(line_no, f"could not be read because of an internal error ({type(exc).__name__}: "
                                 f"{printable(str(exc), 200)}); please report it", key and printable(key))
            return
        if ad is None:
            return
        self.kept += 1
        self._fact(ad, line_no)

    def _adapt_all(self, located: list[Any], problems: list[Any], shallow: bool = False) -> None:
        from .._adapters import full_url_map

        self.fhir = self.fhir or bool(located)
        for p in problems:
            self._error(p.line, p.reason, p.resource, p.field)
        if len(located) == 1 and located[0].full_url is None:
            self._adapt(located[0].resource, located[0].line, shallow=shallow)
            return
        urls = full_url_map(located)  # the entries of one Bundle resolve each other's fullUrl
        for loc in located:
            self._adapt(loc.resource, loc.line, urls, loc.full_url, shallow)

    def runs(self, runs: list[Any]) -> None:
        """The next lines of the split as the local engine's runs (``(buf, start, stop)`` of whole lines, or an
        ``Oversize`` stand-in): one prefilter search per run (``_cohort._work.select_lines``, the local scan's
        own function); only the lines it picks are touched in Python."""
        from .._adapters._guard import shallow_text
        from .._cohort._work import select_lines

        scan = self.scan
        scan.lines = self.rel
        try:
            for number, line, wanted in select_lines(runs, self.prefilter, scan):
                self.parsed += wanted
                problems: list[Any] = []
                self._adapt_all(list(self.line_resources(line, self.path, number, problems, self.limits)), problems,
                                type(line) is bytes and shallow_text(line))  # else an Oversize stand-in
        finally:
            self.lines += scan.lines - self.rel
            self.rel = scan.lines
            self.fhir = self.fhir or scan.fhir

    def read(self, path: str, start: int, end: int, gz: bool) -> Iterator[None]:
        """Read ``[start, end)`` of the file at ``path`` (``end`` -1: all of it) with the local engine's chunk
        reader (``_cohort._work._runs``: the same blocks and runs as its scan), one run at a time; yields after
        each run so that the caller can flush its rows. A read fault (a damaged gzip file, a file gone) is
        reported at the line after the last one read, as the local engine does, and ends the split."""
        from .._cohort._files import Chunk
        from .._cohort._work import _runs
        from ..errors import InputError

        try:
            for run in _runs(Chunk(0, path, start, end, gz), self.limits):
                self.runs([run])
                yield None
        except InputError as exc:
            self._error(self.rel + 1, f"the file cannot be read further: {exc.reason}")

    def document(self, path: str, gz: bool) -> None:
        """A whole-file JSON document (a Bundle or one resource), read as the local engine's scan reads it
        (``_cohort._work.read_document_piece``)."""
        from .._cohort._work import read_document_piece

        located, problems, skip, lines = read_document_piece(path, self.limits, gz)
        if skip is not None:
            self._error(*skip)
        self.parsed += len(located)
        self.rel = self.lines = lines
        self._adapt_all(located, problems)
        self.fhir = True  # a document that is not FHIR was reported above

    def line(self, line: bytes) -> None:
        """The next line of the split, read on its own (a DataFrame's row; the reference of :meth:`runs`)."""
        from .._adapters._guard import shallow_text

        self.rel += 1
        self.lines += 1
        rel = self.rel
        if len(line) > self.max_line:
            line = self.oversize(len(line))
        if not line or line[0] != 123 or line[-1] != 125:  # 123 "{", 125 "}"
            if type(line) is bytes:
                line = self.clean_line(line)
                if not line:
                    return
            if type(line) is not bytes or line[0] != 123 or line[-1] != 125:
                problems: list[Any] = []
                self._adapt_all(list(self.line_resources(line, self.path, rel, problems, self.limits)), problems,
                                type(line) is bytes and shallow_text(line))
                return
        if not self.wants(line):
            if not self.fhir:
                self.fhir = b'"resourceType"' in line
            return
        self.parsed += 1
        problems = []
        self._adapt_all(list(self.line_resources(line, self.path, rel, problems, self.limits)), problems,
                        shallow_text(line))

    def close(self) -> None:
        """The split's count row (a DataFrame of lines: one per file and partition, ``start`` -1)."""
        counts = {"lines": self.lines, "parsed": self.parsed, "kept": self.kept, "fhir": self.fhir,
                  "errors": self.errors}
        start = -1 if self.frame else self.start
        self.out.add(COUNT, self.rank, start, 0, self.lines, None, orjson.dumps(counts))


def _key(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("resourceType"), str) and isinstance(obj.get("id"), str):
        return f"{obj['resourceType']}/{obj['id']}"
    return None


def rank_of(name: str, settings: Settings) -> int:
    """A file's rank from the name the scan input gives it (Spark's ``input_file_name`` URI, or a DataFrame's
    ``file``)."""
    rank = settings.rank_of.get(name)
    if rank is None:
        from urllib.parse import unquote, urlparse

        u = urlparse(name)
        plain = unquote(name)
        rank = settings.rank_of.get(os.path.realpath(unquote(u.path)) if u.scheme in ("", "file") else plain)
    if rank is None:
        raise RuntimeError(f"milan-fhir: the scan met a file it was not given: {name}")
    return rank


def _bulk_runs(values: Any, max_line: int) -> list[Any] | None:
    """The rows of ``values`` (an Arrow binary array: lines without their newline) as the local engine's runs:
    the lines joined by newlines in one buffer (Arrow's ``binary_join``), an ``Oversize`` stand-in for each line
    over the limit. None when a value holds a newline itself (then the rows are read one by one)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    from .._sources import Oversize

    values = pc.fill_null(values, b"")
    n = len(values)
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
    over = np.flatnonzero(lengths > max_line).tolist()
    runs: list[Any] = []
    lo = 0
    for cut in [*over, n]:
        if cut > lo:
            part = values.slice(lo, cut - lo)
            joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, cut - lo], pa.int32()), part), b"\n")
            buf = joined[0].as_py() + b"\n"
            if int(np.count_nonzero(np.frombuffer(buf, np.uint8) == 10)) != cut - lo:  # 10 "\n"
                return None
            runs.append((buf, 0, len(buf)))
        if cut < n:
            runs.append(Oversize(int(lengths[cut])))
        lo = cut + 1
    return runs


def scan_partition(batches: Iterator[Any], settings: Settings, *, bulk: bool = True) -> Iterator[Any]:
    """``mapInArrow`` over ``(file, start, value)`` batches: facts, errors and one count row per split.

    The rows of one split that arrive together are screened as one buffer (:func:`_bulk_runs`, then the local
    engine's ``select_lines``); a DataFrame of lines, a value holding a newline, or ``bulk=False`` (the tests'
    reference), row by row."""
    import numpy as np

    out = _Out(SCAN_SCHEMA)
    splits: dict[tuple[int, int], _Split] = {}
    current: _Split | None = None
    for batch in batches:
        # the file column, dictionary-encoded: one rank lookup per distinct name, not per row
        names = batch.column("file").dictionary_encode()
        by_index = np.array([rank_of(n, settings) for n in names.dictionary.to_pylist()], dtype=np.int64)
        rank_col = by_index[names.indices.to_numpy(zero_copy_only=False)] if len(by_index) else np.zeros(0, np.int64)
        start_col = batch.column("start").to_numpy(zero_copy_only=False)
        if not settings.frame and batch.num_rows:
            cuts = np.flatnonzero((rank_col[1:] != rank_col[:-1]) | (start_col[1:] != start_col[:-1])) + 1
            bounds = [0, *cuts.tolist(), batch.num_rows]
            column = batch.column("value")
            for a, b in zip(bounds[:-1], bounds[1:]):
                rank, start = int(rank_col[a]), int(start_col[a])
                split = splits.get((rank, start))
                if split is None:
                    split = splits[(rank, start)] = _Split(rank, start, settings, out)
                runs = _bulk_runs(column.slice(a, b - a), split.max_line) if bulk else None
                if runs is not None:
                    split.runs(runs)
                    continue
                for value in column.slice(a, b - a).to_pylist():  # a value holding a newline: row by row
                    split.line(value if value is not None else b"")
            if len(out) >= _BATCH:
                yield from out.flush()
            continue
        ranks = rank_col.tolist()
        starts = start_col.tolist()
        values = batch.column("value").to_pylist()
        for rank, start, value in zip(ranks, starts, values):
            if not settings.frame and current is not None and current.start == start and current.rank == rank:
                current.line(value if value is not None else b"")
                continue
            if settings.frame:  # one scanner per file; each row is its own line
                current = splits.get((rank, 0))
                if current is None:
                    current = splits[(rank, 0)] = _Split(rank, start, settings, out)
                current.move(start)
            elif current is None or current.rank != rank or current.start != start:
                current = splits.get((rank, start))
                if current is None:
                    current = splits[(rank, start)] = _Split(rank, start, settings, out)
            current.line(value if value is not None else b"")
        if len(out) >= _BATCH:
            yield from out.flush()
    for split in splits.values():
        split.close()
    yield from out.flush()


def scan_chunks(batches: Iterator[Any], settings: Settings) -> Iterator[Any]:
    """``mapInArrow`` over ``spark.range`` rows whose ``id`` is the index of a byte range of
    ``settings.chunks``: each executor reads its ranges itself (:meth:`_Split.read`) and ships only the facts,
    errors and one count row per range, the rows :func:`scan_partition` gives for Spark's own splits."""
    out = _Out(SCAN_SCHEMA)
    for batch in batches:
        for i in batch.column("id").to_pylist():
            rank, path, start, end, gz, kind = settings.chunks[i]
            split = _Split(rank, start, settings, out)
            if kind == "document":
                split.document(path, gz)
            else:
                for _ in split.read(path, start, end, gz):
                    if len(out) >= _BATCH:
                        yield from out.flush()
            split.close()
    yield from out.flush()


def evaluate_partition(batches: Iterator[Any], settings: Settings) -> Iterator[Any]:
    """``mapInArrow`` over fact rows sorted by ``(patient, file_rank, start, seq)``: per patient the local
    engine's group/evaluate step; out come result rows, duplicate errors and one tally row per partition."""
    from .._cohort._group import evaluate_patients, gather
    from .._cohort._tally import Tally
    from .._domain import PatientRecord

    mappings = settings.mappings
    rules = mappings.rule_set(settings.rule_set)
    out = _Out(EVAL_SCHEMA)
    tally = Tally()
    seen = 0

    def patient_facts() -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        group: list[tuple[Any, ...]] = []
        patient = None
        for batch in batches:
            cols = [batch.column(n).to_pylist() for n in ("patient", "file_rank", "start", "seq", "rel", "payload")]
            for row in zip(*cols):
                if row[0] != patient:
                    if group:
                        yield patient, group  # type: ignore[misc]
                    patient, group = row[0], []
                group.append(row)
        if group:
            yield patient, group  # type: ignore[misc]

    for _patient, group in patient_facts():
        records: dict[str, PatientRecord] = {}
        facts = ((pickle.loads(payload), settings.files[rank], rel, (rank, start, rel, seq))
                 for _, rank, start, seq, rel, payload in group)
        for (rank, start, rel, seq), err in gather(records, facts, all_patients=settings.all_patients):
            out.add(DUPLICATE, None, None, None, None, None, rank, start, rel, seq, err)
        seen += len(records)  # 0 when the only fact was a Patient that failed its deferred validation
        for patient, ev, result, ra in evaluate_patients(records, rules, settings.as_of, mappings,
                                                         settings.all_patients):
            tally.add_evaluation(ev)
            evb = pickle.dumps(ev, protocol=pickle.HIGHEST_PROTOCOL) if settings.keep_evaluations else None
            out.add(RESULT, patient, str(ev.verdict), result, ra, evb, None, None, None, None, None)
        if len(out) >= _BATCH:
            yield from out.flush()
    out.add(TALLY, None, None, None, None, None, None, None, None, seen, pickle.dumps(tally))
    yield from out.flush()
