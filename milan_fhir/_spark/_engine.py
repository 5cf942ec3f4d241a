"""The driver side of the Spark engine: the DataFrames, then the outputs through the local engine's steps.

1. **Inputs**: a local folder or file is listed by the local engine's reader (``_cohort._files.find_files``:
   same files, same order, same skipped files); any other path or glob (``s3a://``, ``abfss://``, ``hdfs://``)
   is read by Spark's file index (hidden files ignored, names ``*.ndjson``/``*.jsonl``/``*.json`` with or without
   ``.gz`` for a folder), in name order. Or a DataFrame of lines (``value``; optional ``file`` and ``line``).
2. **Scan**: local files are cut by the driver into the local engine's byte ranges (``_cohort._files.plan_chunks``)
   and each task reads its range itself (:func:`milan_fhir._spark._tasks.scan_chunks`: the local engine's chunk
   reader, so only the facts leave Python); other sources go through Spark's text source, split on ``\n`` (a
   ``.gz`` file is one split), its lines screened per Arrow batch (:func:`milan_fhir._spark._tasks.scan_partition`).
   Out come compact facts, errors and per-piece counts. The scan is persisted: the counts give each piece's first
   line number in its file (the lines of the earlier pieces of the same file).
3. **Group/evaluate** (:func:`milan_fhir._spark._tasks.evaluate_partition`): facts range-partitioned by patient
   into a set number of partitions and sorted by ``(patient, file, offset, order met)``, the defined order that
   makes the first copy of a duplicate win whatever the partitioning; computed by one job, then kept.
4. **Outputs** (:func:`run_cohort`): results and RiskAssessments streamed to the driver sorted by patient
   (``toLocalIterator``: one partition at a time) and written with ``_cohort._run.write_outputs``; errors sorted
   by file and line (on the driver when few); the summary and report by ``build_summary`` / ``finish``: the same files as the local
   engine, byte for byte (``summary.json``'s ``run`` part aside). Optionally Parquet (``results``, written by
   the executors) and write-back from the driver in batches (``_cohort._writeback.write_back_evaluations``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from .._cohort import _run
from .._cohort._tally import Tally
from .._runtime import as_date
from ._tasks import COUNT, DUPLICATE, ERROR, EVAL_SCHEMA, FACT, RESULT, SCAN_SCHEMA, TALLY, Settings

__all__ = ["Screen", "plan_screen", "run_cohort", "NAME_GLOB"]

#: the files of a folder that the Spark engine reads (off the local file system)
NAME_GLOB = "*.{ndjson,jsonl,json,ndjson.gz,jsonl.gz,json.gz}"


def _norm(uri: str) -> str:
    """A file's identity as Spark names it (``file:`` URIs to plain absolute paths; other URIs unchanged)."""
    u = urlparse(uri)
    if u.scheme in ("", "file"):
        return os.path.realpath(unquote(u.path))
    return uri


def _is_local(source: str) -> bool:
    u = urlparse(source)
    return (u.scheme in ("", "file") or len(u.scheme) == 1) and "*" not in source and "?" not in source


@dataclass
class Screen:
    """The DataFrames of one Spark screen (lazy until an action; ``scan`` is persisted once computed)."""

    spark: Any
    source: Any
    settings: Settings
    files: list[str]  # display names, in file-rank order
    skipped: list[tuple[str, str]]
    scan: Any  # SCAN_SCHEMA rows
    evaluated: Any  # EVAL_SCHEMA rows
    kept: Any  # ``scan`` once computed, read with one task per core (the steps after the scan)

    @property
    def results(self) -> Any:
        """One row per patient of the cohort: ``patient``, ``verdict``, ``result`` (the criteria.md §6 JSON
        line) and ``risk_assessment`` (FHIR JSON), as strings."""
        from pyspark.sql import functions as F

        return (self.evaluated.where(F.col("kind") == RESULT)
                .select("patient", "verdict", F.col("result").cast("string").alias("result"),
                        F.col("risk_assessment").cast("string").alias("risk_assessment")))


def _read_files(spark: Any, source: str, layers: Any
                ) -> tuple[Any, list[str], list[str], list[tuple[str, str]], tuple[tuple[int, str, int, int, bool, str], ...]]:
    """(scan input, normalised names per rank, display names per rank, skipped files, byte ranges).

    A local folder or file: the byte ranges the executors read themselves (the scan input is then
    ``spark.range`` over them, one range per partition); anything else: Spark's text source (lines with their
    file URI and split offset), and no byte ranges."""
    from pyspark.sql import functions as F

    if _is_local(source):
        from .._cohort._files import find_files, plan_chunks

        if urlparse(source).scheme == "file":
            source = unquote(urlparse(source).path)
        files, skipped = find_files(source)
        display = [f.path for f in files]
        names = [_norm(str(Path(f.path).resolve())) for f in files]
        rank = {f.path: i for i, f in enumerate(files)}
        planned = plan_chunks(files, _split_bytes(spark, sum(f.size for f in files)))
        planned.sort(key=lambda c: (-c.cost, c.index))  # the costliest first: Spark starts tasks in this order
        chunks = tuple((rank[c.path], names[rank[c.path]], c.start, c.end, c.gz, c.kind) for c in planned)
        return spark.range(0, len(chunks), 1, max(1, len(chunks))), names, display, skipped, chunks
    reader = spark.read.option("lineSep", "\n")
    is_glob = any(c in source for c in "*?[{")
    df = (reader.text(source) if is_glob else reader.option("pathGlobFilter", NAME_GLOB).text(source))
    uris = sorted(df.inputFiles(), key=_norm)
    lines = df.select(F.input_file_name().alias("file"), F.input_file_block_start().alias("start"),
                      F.col("value").cast("binary").alias("value"))
    return lines, [_norm(u) for u in uris], list(uris), [], ()


def _split_bytes(spark: Any, total: int) -> int:
    """The size of the byte ranges of a local scan, by Spark's own rule for file splits:
    ``min(spark.sql.files.maxPartitionBytes, max(spark.sql.files.openCostInBytes, total / parallelism))``."""
    import re

    def size(key: str, default: str) -> int:
        v = str(spark.conf.get(key, default))
        m = re.fullmatch(r"\s*(\d+)\s*([kmgtp]?)i?b?\s*", v, re.IGNORECASE)
        if m is None:
            return int(default[:-1]) << 20
        return int(m.group(1)) << (10 * " kmgtp".index(m.group(2).lower() or " "))

    most = size("spark.sql.files.maxPartitionBytes", "128m")
    open_cost = size("spark.sql.files.openCostInBytes", "4m")
    cores = int(spark.sparkContext.defaultParallelism)
    return max(1, min(most, max(open_cost, total // max(1, cores))))


def plan_screen(spark: Any, source: Any, *, as_of: dt.date | str | None, rule_set: str | None = None,
                mappings: Iterable[str | os.PathLike[str]] = (), all_patients: bool = False,
                partitions: int | None = None, keep_evaluations: bool = False) -> Screen:
    """Build the DataFrames of a screen (nothing runs yet)."""
    from pyspark.sql import functions as F

    from .._cohort._work import _mappings

    layers = tuple(str(Path(p).resolve()) for p in mappings)
    m = _mappings(layers)
    rules = m.rule_set(rule_set)
    day = as_date(as_of)
    from .._sources import Limits

    limits = Limits.from_env()
    frame = not isinstance(source, (str, os.PathLike))
    chunks: tuple[tuple[int, str, int, int, bool, str], ...] = ()
    if not frame:
        lines, names, display, skipped, chunks = _read_files(spark, os.fspath(source), layers)
    else:  # a DataFrame of lines
        lines, display = _frame_lines(source)
        names, skipped = list(display), []
    ranks = {n: i for i, n in enumerate(names)}
    ranks.update({unquote(n): i for i, n in enumerate(names) if "://" in n})
    settings = Settings(m, tuple(display), ranks, limits.max_line_bytes, day,
                        rules.name, all_patients, keep_evaluations, frame, chunks, limits)

    def scan_fn(batches: Iterator[Any]) -> Iterator[Any]:
        from milan_fhir._spark._tasks import scan_chunks, scan_partition

        return scan_chunks(batches, settings) if settings.chunks else scan_partition(batches, settings)

    def eval_fn(batches: Iterator[Any]) -> Iterator[Any]:
        from milan_fhir._spark._tasks import evaluate_partition

        return evaluate_partition(batches, settings)

    from pyspark import StorageLevel

    scan = lines.mapInArrow(scan_fn, SCAN_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    # the kept scan read by one task per core, not per piece: the steps after the scan move only its facts and
    # errors, and each of their jobs would otherwise pay Spark's per-task cost once per piece
    kept = scan.coalesce(max(1, spark.sparkContext.defaultParallelism))
    facts = kept.where(F.col("kind") == FACT).select("patient", "file_rank", "start", "seq", "rel", "payload")
    # range-partitioned: each patient in one partition, and the partitions in patient order (the outputs are
    # then streamed partition by partition, sorted, with no further shuffle)
    # a number of partitions given, never left to adaptive execution: it would merge the (few, small) fact rows into
    # one task, while evaluating them is Python work worth spreading over every core
    facts = facts.repartitionByRange(partitions or 2 * max(1, spark.sparkContext.defaultParallelism), "patient")
    evaluated = facts.sortWithinPartitions("patient", "file_rank", "start", "seq").mapInArrow(eval_fn, EVAL_SCHEMA)
    return Screen(spark, source, settings, list(display), skipped, scan, evaluated, kept)


def _frame_lines(df: Any) -> tuple[Any, list[str]]:
    """A DataFrame of lines (``value``: string or binary; optional ``file``; optional ``line``, 1-based) as scan
    input. Without ``line`` the rows are numbered in the DataFrame's order (``zipWithIndex``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    cols = set(df.columns)
    if "value" not in cols:
        from ..errors import InputError

        raise InputError("a DataFrame of lines needs a 'value' column (one NDJSON line per row)")
    if "file" not in cols:
        df = df.withColumn("file", F.lit("<dataframe>"))
    files = sorted(r[0] for r in df.select("file").distinct().collect())
    if "line" not in cols:
        schema = StructType(df.schema.fields + [StructField("line", LongType(), False)])
        df = df.rdd.zipWithIndex().map(lambda ri: (*ri[0], ri[1] + 1)).toDF(schema)
    # each row its own "split" at offset line - 1 holding one line: the driver's line arithmetic then gives `line`
    lines = df.select(F.col("file").cast("string").alias("file"), (F.col("line").cast("long") - 1).alias("start"),
                      F.col("value").cast("binary").alias("value"))
    return lines, files


def screen(spark: Any, source: Any, **kw: Any) -> Any:
    """See :func:`milan_fhir.spark.screen`."""
    return plan_screen(spark, source, **kw).results


# --------------------------------------------------------------------------------------------- outputs
def _line0(counts: list[Any], frame: bool) -> dict[tuple[int, int], int]:
    """Each split's first line number in its file: the lines of the earlier splits of the same file."""
    line0: dict[tuple[int, int], int] = {}
    running: dict[int, int] = {}
    if frame:  # a DataFrame of lines: each row is its own split at offset line - 1 (see _line0_frame)
        return _Line0Frame()
    for rank, start, lines in sorted((r.file_rank, r.start, r.rel) for r in counts):
        line0[(rank, start)] = running.get(rank, 0)
        running[rank] = line0[(rank, start)] + lines
    return line0


def _error_key(row: Any, stream: int) -> tuple[Any, ...]:
    return (row.file_rank, row.start, -1 if row.rel is None else row.rel, stream, row.seq, bytes(row.payload))


class _Line0Frame(dict):  # type: ignore[type-arg]
    """A DataFrame of lines: a row's split offset is its line number - 1, so that is the split's line 0."""

    def get(self, key: Any, default: Any = None) -> Any:
        return key[1]


#: up to this many scan errors are sorted on the driver; more are sorted by Spark and streamed
DRIVER_SORTED_ERRORS = 100_000


def _errors(scr: Screen, line0: dict[tuple[int, int], int], skipped: list[tuple[str, str]],
            duplicates: list[tuple[Any, ...]], count: int) -> Iterator[bytes]:
    """errors.ndjson: files skipped, then the scan's errors (``count`` of them: sorted here when few, else by
    Spark) merged with the duplicates (few, gathered on the driver), in file and line order."""
    import heapq

    from pyspark.sql import functions as F

    yield from _run.skipped_errors(skipped)
    scan_err = scr.kept.where(F.col("kind") == ERROR).select("file_rank", "start", "rel", "seq", "payload")
    files = scr.settings.files
    stream: Iterable[tuple[Any, ...]]
    if count <= DRIVER_SORTED_ERRORS:  # few (the usual case): gathered and sorted here, no sort job
        stream = sorted(_error_key(row, 0) for row in scan_err.collect())
    else:
        stream = (_error_key(row, 0) for row in scan_err.orderBy("file_rank", "start", "rel", "seq")
                  .toLocalIterator(prefetchPartitions=True))
    for rank, start, rel, _, _, payload in heapq.merge(stream, sorted(duplicates)):
        e = orjson.loads(payload)
        line = None if rel < 0 else line0.get((rank, start), 0) + rel
        yield orjson.dumps({"file": files[rank], "line": line, "resource": e["resource"], "field": e["field"],
                            "reason": e["reason"]})


def run_cohort(spark: Any, source: Any, out: str | os.PathLike[str], *, as_of: dt.date | str | None = None,
               rule_set: str | None = None, mappings: Iterable[str | os.PathLike[str]] = (),
               all_patients: bool = False, partitions: int | None = None, parquet: str | os.PathLike[str] | bool = False,
               write_back: dict[str, Any] | None = None) -> _run.CohortResult:
    """See :func:`milan_fhir.spark.run_cohort`."""
    import pickle

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from .. import _sink

    t0 = time.perf_counter()
    outp = _sink.ensure_dir(out)
    _sink.clean_stale(outp)
    (outp / "summary.json").unlink(missing_ok=True)
    scr = plan_screen(spark, source, as_of=as_of, rule_set=rule_set, mappings=mappings, all_patients=all_patients,
                      partitions=partitions, keep_evaluations=bool(write_back))
    try:
        counts = scr.scan.where(F.col("kind") == COUNT).select("file_rank", "start", "rel", "payload").collect()
        t_scan = time.perf_counter()
        frame = not isinstance(source, (str, os.PathLike))
        line0 = _line0(counts, frame)
        stats = [orjson.loads(r.payload) for r in counts]
        fhir_ranks = {r.file_rank for r, s in zip(counts, stats) if s["fhir"]}
        files = scr.files
        skipped = scr.skipped + [(f, "no line is a FHIR resource") for i, f in enumerate(files) if i not in fhir_ranks]
        n_scan_errors = sum(s["errors"] for s in stats)
        ev = scr.evaluated.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ev.count()  # one job over every partition at once (streaming alone would compute one or two at a time)
            if parquet:
                target = str(parquet) if not isinstance(parquet, bool) else str(outp / "parquet")
                scr.results.write.mode("overwrite").parquet(target.rstrip("/") + "/results")
            tally = Tally()
            seen = 0
            duplicates: list[tuple[Any, ...]] = []
            with ExitStack() as stack:
                wb = _WriteBack(stack, scr.settings.mappings, write_back) if write_back else None

                def pairs() -> Iterator[tuple[bytes, bytes]]:
                    """One pass over the evaluated partitions, in patient order (range-partitioned)."""
                    nonlocal seen
                    for row in ev.toLocalIterator(prefetchPartitions=True):
                        if row.kind == RESULT:
                            if wb is not None:
                                wb.add(pickle.loads(row.evaluation))
                            yield bytes(row.result), bytes(row.risk_assessment)
                        elif row.kind == DUPLICATE:
                            duplicates.append(_error_key(row, 1))
                        elif row.kind == TALLY:
                            tally.merge(pickle.loads(row.payload))
                            seen += row.seq
                    if wb is not None:
                        wb.flush()

                n_results, n_errors = _run.write_outputs(outp, pairs(), _errors(scr, line0, skipped, duplicates, n_scan_errors),
                                                         None if wb is None else wb.lines())
            t_eval = time.perf_counter()
            wb_counts = wb.counts if wb is not None else None
            assert tally.patients == n_results
            scan_counts = _run.ScanCounts(list(files), skipped, sum(s["lines"] for s in stats),
                                          sum(s["parsed"] for s in stats), sum(s["kept"] for s in stats))
            summary = _run.build_summary(
                source="<dataframe>" if frame else source, day=scr.settings.as_of,
                rules=scr.settings.mappings.rule_set(rule_set), mappings=scr.settings.mappings, scan=scan_counts,
                errors=n_errors, patients_seen=seen, tally=tally, all_patients=all_patients,
                write_back=(write_back["base_url"], wb_counts or {}) if write_back else None)
        finally:
            ev.unpersist()
    finally:
        scr.scan.unpersist()

    def run() -> dict[str, Any]:
        t_end = time.perf_counter()
        return {"engine": "spark", "master": spark.sparkContext.master,
                "parallelism": spark.sparkContext.defaultParallelism, "seconds": round(t_end - t0, 3),
                "stages": {"scan": round(t_scan - t0, 3), "evaluate_and_outputs": round(t_eval - t_scan, 3),
                           "summary_and_report": round(t_end - t_eval, 3)}}

    return _run.finish(outp, summary, run, engine="spark")


class _WriteBack:
    """Write-back from the driver as the results stream in (sorted by patient), in batches, with the local
    engine's code (``write_back_evaluations``: one lookup ``batch`` per batch, then version-aware writes)."""

    def __init__(self, stack: ExitStack, mappings: Any, write_back: dict[str, Any]) -> None:
        from .._client import FhirClient
        from .._cohort._writeback import ACTIONS

        self.client = stack.enter_context(FhirClient(write_back["base_url"], token=write_back.get("token")))
        self.mappings = mappings
        self.tag = tuple(write_back["tag"]) if write_back.get("tag") else None
        self.batch_size = int(write_back.get("batch_size") or 50)
        self.counts = dict.fromkeys(ACTIONS, 0)
        self.pending: list[Any] = []
        self.done: list[bytes] = []

    def add(self, ev: Any) -> None:
        self.pending.append(ev)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        from .._cohort._writeback import write_back_evaluations

        if not self.pending:
            return
        counts, lines = write_back_evaluations(self.client, self.pending, self.mappings, batch_size=self.batch_size,
                                               tag=self.tag)  # type: ignore[arg-type]
        for k, v in counts.items():
            self.counts[k] += v
        self.done.extend(lines)
        self.pending = []

    def lines(self) -> Iterator[bytes]:
        for ln in self.done:
            yield ln.rstrip(b"\n").partition(b"\t")[2]
