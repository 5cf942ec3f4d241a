"""Running a cohort: plan the chunks, scan them (stage 1), evaluate the buckets (stage 2), merge, report.

Outputs in ``out``: ``results.ndjson`` (criteria.md §6 lines), ``risk-assessments.ndjson``, ``errors.ndjson``,
``summary.json``, ``report.html``; each written to a temporary name and renamed when complete, so they are
always whole files of one run, never appended to. Intermediate pieces live in ``out/.cohort-work/`` (each
piece renamed into place when complete) and are removed after a successful run.

``resume=True`` reuses the complete pieces of an interrupted run when its inputs (file names, sizes and
modification times) and settings (as-of date, rule set, mappings, cohort definition) are the same; otherwise, and
without ``resume``, the run starts from scratch. Either way the outputs hold each patient, RiskAssessment and
error exactly once.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from .._runtime import as_date, software_version
from .._mappings import Mappings
from .._sources import Limits
from ..errors import scrub
from ._files import CHUNK_BYTES, find_files, plan_chunks
from ._report import criterion_labels, render_html
from ._tally import Tally
from ._writeback import ACTIONS, WriteBackTask, write_back_bucket
from ._work import (
    BucketTask,
    _mappings,
    ScanTask,
    bucket_name,
    chunk_name,
    evaluate_bucket,
    order_key,
    read_bucket_result,
    read_scan_errors,
    read_scan_result,
    scan_chunk,
    watch_parent,
    write_atomic,
)
from .. import _sink

__all__ = ["run_cohort", "CohortResult", "ScanCounts", "write_outputs", "build_summary", "finish", "OUTPUT_FILES",
           "COHORT_DEFINITION", "WORK_DIR", "WRITE_BACK_FILE"]

OUTPUT_FILES = ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson", "summary.json", "report.html")
WRITE_BACK_FILE = "write-back.ndjson"
WORK_DIR = ".cohort-work"
COHORT_DEFINITION = "patients with a primary neuroendocrine tumour or liver metastases on record"
ALL_PATIENTS_DEFINITION = "every patient in the export"
MANIFEST_VERSION = 3  # 2: facts carry their scan order (seq); Patients validated in the group step; 3: one piece
# per chunk (facts, errors and its record)
_BUCKET_INPUT_BYTES = 64 << 20
_MIN_BUCKETS = 16  # enough tasks to keep every process busy in stage 2
_MAX_BUCKETS = 256
_MAX_CHUNK_BYTES = 512 << 20
#: chunks a large export is cut into (at least 8 MB each): fine enough to balance many workers; fewer, larger
#: chunks save work files (about 0.5 ms each to create) but raised peak memory (measured: 75 -> 115 MB)
_TARGET_CHUNKS = 512


def _buckets_for(total_bytes: int) -> int:
    return max(_MIN_BUCKETS, min(_MAX_BUCKETS, math.ceil(total_bytes / _BUCKET_INPUT_BYTES)))


def _progress_bar(enabled: bool, **kw: Any) -> Any:
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not enabled, dynamic_ncols=True, leave=False, **kw)


def _start_method() -> str:
    """``fork`` where it exists and is the platform's tradition (Linux): helpers then start in milliseconds with
    everything already imported and loaded; elsewhere ``spawn``. Everything the helpers run is spawn-safe
    (top-level functions, picklable tasks, state loaded on first use); ``MILAN_FHIR_MP_START`` overrides."""
    wanted = os.environ.get("MILAN_FHIR_MP_START", "").strip()
    if wanted:
        return wanted
    return "fork" if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _warm_up(layers: tuple[str, ...]) -> None:
    """Import and load in this process what both stages use (inherited by forked helpers, needed here anyway)."""
    from .. import _evaluate  # noqa: F401
    from .._adapters import _validate
    from .._writers import fhir  # noqa: F401
    from ._work import _mappings

    _mappings(layers)
    for rtype in ("Patient", "Observation", "Condition", "Procedure"):
        _validate._model(rtype)


class _Helpers:
    """The helper processes of a run, ``workers - 1`` of them (the main process works too, :func:`_run_all`), and
    the shared index by which every process takes the next task of a stage."""

    def __init__(self, count: int) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no tqdm monitor thread in a process that forks
        ctx = multiprocessing.get_context(_start_method())
        self.count = count
        self.next_task: Any = ctx.Value("q", 0)  # a shared int with its lock; helpers get it as they start
        self.executor = ProcessPoolExecutor(max_workers=count, mp_context=ctx, initializer=_start_helper,
                                            initargs=(os.getpid(), self.next_task))

    def __enter__(self) -> _Helpers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _executor(workers: int) -> _Helpers | None:
    return _Helpers(workers - 1) if workers > 1 else None


_NEXT_TASK: Any = None  # in a helper process: the run's shared task index (set by _start_helper)


def _start_helper(parent: int, next_task: Any) -> None:
    watch_parent(parent)
    global _NEXT_TASK
    _NEXT_TASK = next_task


def _take(next_task: Any, n: int) -> int:
    """The index of the next task to run (``n`` when none is left)."""
    with next_task.get_lock():
        i = next_task.value
        if i < n:
            next_task.value = i + 1
    return int(i)


def _stop(next_task: Any, n: int) -> None:
    """No process takes another task of this stage (a task failed)."""
    with next_task.get_lock():
        next_task.value = n


def _drain(fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
    """In a helper: run the stage's tasks taken from the shared index until none is left; their results."""
    done = []
    try:
        while (i := _take(_NEXT_TASK, len(tasks))) < len(tasks):
            done.append(fn(tasks[i]))
    except BaseException:
        _stop(_NEXT_TASK, len(tasks))
        raise
    return done


def _run_all(pool: _Helpers | None, fn: Callable[[Any], Any], tasks: list[Any], on_done: Callable[[Any], None],
             advance: Callable[[int], Any] = lambda n: None, cost: Callable[[Any], int] = lambda t: 1) -> None:
    """Run every task; ``on_done`` gets each result (in no set order: callers must not depend on it), ``advance``
    the summed ``cost`` of the tasks as they are taken (a progress bar).

    Every process, the main one included, takes the next task from one shared index until none is left, so the
    tasks run in their list order (callers put the costliest first: the last tasks run anywhere are then the
    cheapest). Nothing passes through the main process while the stage runs: each helper sends its results once,
    at the end (measured: a helper fed task by task by the main process waited for it ~5 ms a task, the main
    process being busy with its own task and holding the interpreter lock).
    """
    if pool is None or not tasks:
        for t in tasks:
            on_done(fn(t))
            advance(cost(t))
        return
    n = len(tasks)
    reached = [0]
    for t in tasks:
        reached.append(reached[-1] + cost(t))
    shown = 0
    pool.next_task.value = 0
    drains = [pool.executor.submit(_drain, fn, tasks) for _ in range(pool.count)]
    try:
        while (i := _take(pool.next_task, n)) < n:
            on_done(fn(tasks[i]))
            taken = reached[min(n, pool.next_task.value)]
            advance(taken - shown)
            shown = taken
        for f in drains:
            for res in f.result():
                on_done(res)
    except BaseException:
        _stop(pool.next_task, n)
        for f in drains:
            f.cancel()
        raise
    advance(reached[n] - shown)


def _prepare_workdir(work: Path, manifest: dict[str, Any], resume: bool) -> bool:
    """True when complete pieces of an earlier identical run may be reused."""
    mf = work / "manifest.json"
    if resume and mf.exists() and not work.is_symlink():
        try:
            if orjson.loads(mf.read_bytes()) == manifest:
                _sink.clean_stale(work)
                return True
        except (OSError, orjson.JSONDecodeError):
            pass
        print("milan-fhir cohort: the interrupted run had other inputs or settings; starting from scratch",
              file=sys.stderr)
    if work.is_symlink() or work.is_file():
        work.unlink()
    elif work.exists():
        shutil.rmtree(work)
    _sink.ensure_dir(work)
    write_atomic(mf, orjson.dumps(manifest))
    return False


def _lines_of(path: Path) -> Iterator[tuple[str, bytes]]:
    """``key\\tpayload`` lines of a part file as (key, payload)."""
    with open(path, "rb") as fh:
        for raw in fh:
            key, _, payload = raw.rstrip(b"\n").partition(b"\t")
            yield key.decode("utf-8"), payload


def _scan_errors(work: Path, chunks: list[Any], line0: dict[int, int]) -> Iterator[tuple[str, bytes]]:
    """Stage-1 errors in file and line order, with absolute line numbers and the file name."""
    for ch in chunks:
        for raw in read_scan_errors(work, ch.index).split(b"\n")[:-1]:  # each error line ends with a newline
            e = orjson.loads(raw)
            rel = e["line"]  # None: a fault of the whole file
            line = None if rel is None else line0[ch.index] + rel
            rec = {"file": ch.path, "line": line, "resource": e["resource"], "field": e["field"],
                   "reason": e["reason"]}
            yield order_key(ch.index, rel or 0, e.get("seq", 0)), orjson.dumps(rec)


@dataclass(frozen=True, eq=False)
class CohortResult(Mapping[str, Any]):
    """What a cohort run gives back, whichever engine ran it (``run_cohort``, ``milan_fhir.spark.run_cohort``).

    The typed fields cover what callers use most; ``summary`` is the whole of ``summary.json``, and the result
    reads like it (``result["tally"]``), as the summary dict ``run_cohort`` used to return did.
    """

    out: Path
    summary: dict[str, Any]
    engine: str = "local"

    @property
    def patients(self) -> int:
        """Patients evaluated (the cohort, or every patient with ``all_patients``)."""
        return int(self.summary["tally"]["patients"])

    @property
    def patients_seen(self) -> int:
        return int(self.summary["patients_seen"])

    @property
    def verdicts(self) -> dict[str, int]:
        return dict(self.summary["tally"]["verdicts"])

    @property
    def errors(self) -> int:
        return int(self.summary["errors"])

    @property
    def lines(self) -> int:
        return int(self.summary["lines"])

    @property
    def outputs(self) -> tuple[Path, ...]:
        return tuple(self.out / name for name in self.summary["outputs"])

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.summary)

    def __len__(self) -> int:
        return len(self.summary)


@dataclass
class ScanCounts:
    """What the scan step read: input files, files skipped (with why), lines, lines parsed, resources kept."""

    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lines: int = 0
    parsed: int = 0
    kept: int = 0


# ------------------------------------------------------------------------------------ steps both engines share
def write_outputs(outp: Path, evaluated: Iterable[tuple[bytes, bytes]], errors: Iterable[bytes],
                  write_back: Iterable[bytes] | None = None) -> tuple[int, int]:
    """Write ``results.ndjson`` and ``risk-assessments.ndjson`` from one stream of (JSON line, RiskAssessment)
    pairs already sorted by patient, ``errors.ndjson`` from its lines in order, and ``write-back.ndjson`` when
    given (each atomically, :mod:`milan_fhir._sink`). Returns (results, errors) written."""
    n = n_errors = 0
    with _sink.atomic_open(outp / "results.ndjson") as fr, _sink.atomic_open(outp / "risk-assessments.ndjson") as fa:
        for result, ra in evaluated:
            fr.write(result + b"\n")
            fa.write(ra + b"\n")
            n += 1
    if write_back is not None:
        with _sink.atomic_open(outp / WRITE_BACK_FILE) as fh:
            for line in write_back:
                fh.write(line + b"\n")
    with _sink.atomic_open(outp / "errors.ndjson") as fh:
        for line in errors:
            fh.write(line + b"\n")
            n_errors += 1
    return n, n_errors


def skipped_errors(skipped: Iterable[tuple[str, str]]) -> Iterator[bytes]:
    """The ``errors.ndjson`` lines of the files skipped as a whole (they come first)."""
    for f, why in skipped:
        yield orjson.dumps({"file": f, "line": None, "resource": None, "field": None, "reason": f"file skipped: {why}"})


def build_summary(*, source: Any, day: dt.date, rules: Any, mappings: Mappings, scan: ScanCounts, errors: int,
                  patients_seen: int, tally: Tally, all_patients: bool,
                  write_back: tuple[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """The summary (``summary.json`` without its ``run`` part), the same for both engines."""
    summary: dict[str, Any] = {
        "software_version": software_version(),
        "as_of": day.isoformat(),
        "rule_set": rules.name,
        "rule_set_version": rules.version,
        "mapping_version": mappings.version,
        "source": str(source),
        "files": list(scan.files),
        "skipped_files": [list(s) for s in scan.skipped],
        "lines": scan.lines,
        "parsed": scan.parsed,
        "resources_kept": scan.kept,
        "errors": errors,
        "patients_seen": patients_seen,
        "cohort_definition": ALL_PATIENTS_DEFINITION if all_patients else COHORT_DEFINITION,
        "criterion_labels": criterion_labels(rules),
        "tally": tally.as_dict(),
        "outputs": list(OUTPUT_FILES) + ([WRITE_BACK_FILE] if write_back else []),
    }
    if write_back:
        summary["write_back"] = {"server": scrub(write_back[0]), **write_back[1]}
    return summary


def finish(outp: Path, summary: dict[str, Any], run: Callable[[], dict[str, Any]], engine: str = "local") -> CohortResult:
    """Write ``report.html``, then ``summary.json`` (last: its presence means the outputs are one whole run) with
    ``run()``'s timings and settings under ``"run"``."""
    write_atomic(outp / "report.html", render_html(summary).encode("utf-8"), durable=True)
    summary["run"] = run()
    write_atomic(outp / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2), durable=True)
    return CohortResult(outp, summary, engine)


# ------------------------------------------------------------------------------------------- the local engine
@dataclass
class _Plan:
    """A local run's settings and inputs, settled before any work."""

    source: Any
    outp: Path
    layers: tuple[str, ...]
    mappings: Mappings
    rules: Any
    day: dt.date
    files: list[Any]
    skipped: list[tuple[str, str]]
    chunks: list[Any]
    buckets: int
    work: Path
    reuse: bool
    workers: int
    limits: Limits
    all_patients: bool
    progress: bool


def _plan(source: Any, out: Any, *, as_of: Any, rule_set: str | None, mappings: Iterable[Any], workers: int,
          resume: bool, progress: bool, all_patients: bool, chunk_bytes: int | None) -> _Plan:
    """Settle mappings, rule set and date; list and chunk the inputs; prepare the work folder."""
    layers = tuple(str(Path(p).resolve()) for p in mappings)
    m: Mappings = _mappings(layers)
    rules = m.rule_set(rule_set)
    day = as_date(as_of)
    outp = _sink.ensure_dir(out)  # refuses a symlink or a file; private mode when created
    _sink.clean_stale(outp)  # temporary files of a run killed during its final merge
    limits = Limits.from_env()
    files, skipped = find_files(source, exclude={outp / name for name in (*OUTPUT_FILES, WRITE_BACK_FILE)})
    total_bytes = sum(f.size for f in files)
    if chunk_bytes is None:  # memory does not depend on it (lines are read in blocks); each chunk costs files
        chunk_bytes = min(_MAX_CHUNK_BYTES, max(CHUNK_BYTES, total_bytes // _TARGET_CHUNKS))
    chunks = plan_chunks(files, chunk_bytes)
    buckets = _buckets_for(total_bytes)
    manifest = {
        "version": MANIFEST_VERSION,
        "software": software_version(),  # work pieces (pickled facts, evaluations) of another release are not reused
        "files": [[f.path, f.size, f.mtime_ns] for f in files],
        "as_of": day.isoformat(),
        "rule_set": rules.name,
        "mappings": [m.version, m.fingerprint(), list(layers)],
        "all_patients": all_patients,
        "chunk_bytes": chunk_bytes,
        "buckets": buckets,
        "limits": [limits.max_line_bytes, limits.max_gzip_ratio],
    }
    work = outp / WORK_DIR
    reuse = _prepare_workdir(work, manifest, resume)
    # summary.json is written last: while it is absent, the outputs are not those of one complete run
    (outp / "summary.json").unlink(missing_ok=True)
    return _Plan(source, outp, layers, m, rules, day, files, skipped, chunks, buckets, work, reuse,
                 max(1, int(workers)), limits, all_patients, progress)


def _scan(plan: _Plan, pool: _Helpers | None, stack: ExitStack) -> tuple[dict[int, Any], dict[int, int]]:
    """Stage 1: every chunk scanned (or its piece reused); returns the scan results and each chunk's first line
    number in its file."""
    work, chunks = plan.work, plan.chunks
    scans: dict[int, Any] = {}
    todo = []
    for ch in chunks:
        done = read_scan_result(work, ch.index) if plan.reuse else None
        if done is not None:
            scans[ch.index] = done
        else:
            todo.append(ScanTask(ch, str(work), plan.buckets, plan.layers, plan.limits))
    bar = stack.enter_context(_progress_bar(plan.progress, total=sum(c.nbytes for c in chunks), unit="B",
                                            unit_scale=True, unit_divisor=1024, desc="reading"))
    bar.update(sum(scans[i][0].nbytes for i in scans))

    def scanned(res: Any) -> None:
        scans[res.index] = read_scan_result(work, res.index)

    todo.sort(key=lambda t: -t.chunk.cost)
    _run_all(pool, scan_chunk, todo, scanned, bar.update, lambda t: t.chunk.nbytes)
    bar.close()
    # absolute line numbers: lines of the earlier chunks of the same file
    line0: dict[int, int] = {}
    running: dict[str, int] = {}
    for ch in chunks:
        line0[ch.index] = running.get(ch.path, 0)
        running[ch.path] = line0[ch.index] + scans[ch.index][0].lines
    return scans, line0


def _evaluate(plan: _Plan, pool: _Helpers | None, stack: ExitStack, scans: dict[int, Any], line0: dict[int, int],
              keep_evaluations: bool) -> dict[int, Any]:
    """Stage 2: every bucket grouped and evaluated (or its piece reused)."""
    work, chunks = plan.work, plan.chunks
    chunk_meta = tuple((ch.index, ch.path, line0[ch.index]) for ch in chunks)
    results: dict[int, Any] = {}
    tasks = []
    for b in range(plan.buckets):
        done = read_bucket_result(work, b) if plan.reuse else None
        if done is not None and keep_evaluations and not (work / f"{bucket_name(b)}.evals").exists():
            done = None
        if done is not None:
            results[b] = done
            continue
        sections = tuple(scans[ch.index][1][b] for ch in chunks)
        tasks.append(BucketTask(b, str(work), chunk_meta, sections, plan.day, plan.rules.name, plan.layers,
                                plan.all_patients, keep_evaluations=keep_evaluations))
    bar = stack.enter_context(_progress_bar(plan.progress, total=plan.buckets, initial=len(results),
                                            desc="evaluating", unit="bucket"))

    def evaluated(res: Any) -> None:
        results[res.bucket] = res

    tasks.sort(key=lambda t: -sum(length for frames in t.sections for _, length in frames))  # costliest first
    _run_all(pool, evaluate_bucket, tasks, evaluated, bar.update)
    bar.close()
    return results


def _write_back(plan: _Plan, pool: _Helpers | None, stack: ExitStack, write_back: dict[str, Any]) -> dict[str, int]:
    """Stage 3 (optional): every bucket's RiskAssessments written back; returns the counts per action."""
    wb_counts = dict.fromkeys(ACTIONS, 0)
    wb_tasks = [
        WriteBackTask(b, str(plan.work), write_back["base_url"], write_back.get("token"), plan.layers,
                      int(write_back.get("batch_size") or 50),
                      tuple(write_back["tag"]) if write_back.get("tag") else None)
        for b in range(plan.buckets)
    ]
    bar = stack.enter_context(_progress_bar(plan.progress, total=plan.buckets, desc="writing back", unit="bucket"))

    def written(counts: dict[str, int]) -> None:
        for k, v in counts.items():
            wb_counts[k] += v

    _run_all(pool, write_back_bucket, wb_tasks, written, bar.update)
    bar.close()
    return wb_counts


def _evaluated_parts(plan: _Plan) -> Iterator[tuple[bytes, bytes]]:
    """(JSON line, RiskAssessment) pairs of every bucket, merged by patient (both part files hold the same keys in
    the same order)."""
    names = [bucket_name(b) for b in range(plan.buckets)]
    results = heapq.merge(*[_lines_of(plan.work / f"{n}.results") for n in names], key=lambda kv: kv[0])
    ras = heapq.merge(*[_lines_of(plan.work / f"{n}.ra") for n in names], key=lambda kv: kv[0])
    for (k1, result), (k2, ra) in zip(results, ras, strict=True):
        assert k1 == k2
        yield result, ra


def _error_lines(plan: _Plan, line0: dict[int, int], skipped: list[tuple[str, str]]) -> Iterator[bytes]:
    yield from skipped_errors(skipped)
    streams = [_scan_errors(plan.work, plan.chunks, line0)]
    streams += [_lines_of(plan.work / f"{bucket_name(b)}.errors") for b in range(plan.buckets)]
    for _, payload in heapq.merge(*streams, key=lambda kv: kv[0]):
        yield payload


def run_cohort(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    as_of: dt.date | str | None = None,
    rule_set: str | None = None,
    mappings: Iterable[str | os.PathLike[str]] = (),
    workers: int = 1,
    resume: bool = False,
    progress: bool = False,
    all_patients: bool = False,
    chunk_bytes: int | None = None,
    write_back: dict[str, Any] | None = None,
) -> CohortResult:
    """Screen every patient of an NDJSON export folder (or file); write the outputs into ``out``.

    Returns a :class:`CohortResult` (it reads like the summary, also written to ``out/summary.json``). Raises
    :class:`InputError` when the source cannot be read at all, :class:`MappingError` / :class:`RuleSetError` for
    bad mappings or rule set; bad lines and resources are reported in ``errors.ndjson`` and skipped.

    ``write_back``: ``{"base_url": ..., "token": None, "tag": None, "batch_size": 50}`` to also write every
    RiskAssessment to that server (idempotent, criteria.md §5); what was done goes to ``write-back.ndjson``.

    Steps: plan, scan (stage 1), group and evaluate (stage 2), write back (optional), then the outputs, the
    summary and the report (:func:`write_outputs`, :func:`build_summary`, :func:`finish`, shared with the Spark
    engine).
    """
    t0 = time.perf_counter()
    plan = _plan(source, out, as_of=as_of, rule_set=rule_set, mappings=mappings, workers=workers, resume=resume,
                 progress=progress, all_patients=all_patients, chunk_bytes=chunk_bytes)
    _warm_up(plan.layers)
    wb_counts: dict[str, int] | None = None
    with ExitStack() as stack:
        pool = _executor(plan.workers)
        if pool is not None:
            stack.enter_context(pool)
        t_pool = time.perf_counter()
        scans, line0 = _scan(plan, pool, stack)
        t_scan = time.perf_counter()
        results = _evaluate(plan, pool, stack, scans, line0, keep_evaluations=bool(write_back))
        t_eval = time.perf_counter()
        if write_back:
            wb_counts = _write_back(plan, pool, stack, write_back)

    # ---- outputs and report
    # a file none of whose lines is FHIR (a log, a report) is reported as a whole, as evaluate does
    fhir_files = {ch.path for ch in plan.chunks if getattr(scans[ch.index][0], "fhir", True)}
    skipped = plan.skipped + [(f.path, "no line is a FHIR resource") for f in plan.files if f.path not in fhir_files]
    wb_lines = None
    if write_back:
        wb_lines = (payload for _, payload in heapq.merge(
            *[_lines_of(plan.work / f"{bucket_name(b)}.writeback") for b in range(plan.buckets)], key=lambda kv: kv[0]))
    n_results, n_errors = write_outputs(plan.outp, _evaluated_parts(plan), _error_lines(plan, line0, skipped), wb_lines)
    tally = Tally()
    for b in range(plan.buckets):
        tally.merge(results[b].tally)
    assert tally.patients == n_results
    counts = ScanCounts([f.path for f in plan.files], skipped, sum(scans[i][0].lines for i in scans),
                        sum(scans[i][0].parsed for i in scans), sum(scans[i][0].kept for i in scans))
    summary = build_summary(source=source, day=plan.day, rules=plan.rules, mappings=plan.mappings, scan=counts,
                            errors=n_errors, patients_seen=sum(r.patients_seen for r in results.values()),
                            tally=tally, all_patients=all_patients,
                            write_back=(write_back["base_url"], wb_counts or {}) if write_back else None)

    def run() -> dict[str, Any]:
        t_end = time.perf_counter()
        return {"workers": plan.workers, "resumed": plan.reuse, "seconds": round(t_end - t0, 3),
                "stages": {"plan": round(t_pool - t0, 3), "scan": round(t_scan - t_pool, 3),
                           "evaluate": round(t_eval - t_scan, 3), "merge_and_report": round(t_end - t_eval, 3)}}

    result = finish(plan.outp, summary, run)
    shutil.rmtree(plan.work, ignore_errors=True)
    return result
