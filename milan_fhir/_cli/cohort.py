"""``milan-fhir cohort``: the command-line face of :func:`~milan_fhir._cohort.run_cohort`."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any

from ..errors import InputError
from ._common import (
    add_command,
    all_patients_option,
    EXIT_OK,
    as_of_option,
    bearer_token,
    mappings_option,
    out_option,
    parse_as_of,
    rule_set_option,
    server_client,
    server_option,
    smart_auth_from_args,
    smart_options,
    warn,
    write_back_option,
)

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  milan-fhir cohort export/ --out screening/ --as-of 2026-01-15
      every NDJSON file in export/ (plain or .gz, any naming); outputs in screening/
  milan-fhir cohort export/ --out screening/ --workers 4 --resume
      4 worker processes; reuse what an interrupted run into screening/ already finished
  milan-fhir cohort export/ --engine spark --spark-master 'local[2]' --out screening/ --as-of 2026-01-15
      the same screen on Apache Spark (extra milan-fhir[spark]; same outputs; docs/spark.md)
  milan-fhir cohort --server https://fhir.example.org/fhir --group net-registry --out screening/ --as-of 2026-01-15 \
      --write-back
      run a Bulk Data $export of Group/net-registry, screen it, and write the RiskAssessments back

outputs (in --out): results.ndjson (one JSON line per patient, criteria.md §6), risk-assessments.ndjson (FHIR
RiskAssessments, for $import or a transaction upload), errors.ndjson (file, line, reason for each malformed line
or invalid resource; the run goes on), summary.json and report.html (counts per verdict and criterion, and the
flow of patients lost at each criterion); with --write-back also write-back.ndjson. Each is replaced whole at
the end of a run (written to a temporary name, then renamed): a run never appends to an earlier one.

environment: MILAN_FHIR_TOKEN, a bearer token for --server.
exit status: 0 whatever the verdicts and however many lines were skipped; 2 when the source, the mappings or an
option cannot be used at all.
"""


def _source_argument() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("source", metavar="SOURCE", nargs="?",
                        help="a folder of NDJSON files (plain or .gz, any naming, resource types mixed or not), or one "
                             "file")
    return parent


def _workers_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--workers", metavar="N", type=int, default=min(os.cpu_count() or 1, 8),
                        help="worker processes (default: the number of CPUs, at most 8); results do not depend on it")
    return parent


_BYTE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _byte_count(text: str) -> int:
    """``500M``, ``2G``, ``1048576``: a byte count (binary suffixes K, M, G, T, optionally followed by B or iB)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, suffix = (t[:-1], t[-1]) if t and t[-1] in _BYTE_SUFFIXES else (t, "")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 500M, 2G)") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 500M, 2G)")
    return int(value * _BYTE_SUFFIXES[suffix])


def _export_options() -> argparse.ArgumentParser:
    """``--group``, ``--poll-cap``, ``--max-download-bytes``: the $export of ``--server``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--group", metavar="ID", help="with --server: export Group/ID only (default: system-level export)")
    parent.add_argument("--poll-cap", metavar="SECONDS", type=float, default=30.0,
                        help="with --server: the longest wait between status polls, whatever Retry-After asks (default 30)")
    parent.add_argument("--max-download-bytes", metavar="N", type=_byte_count, default=None,
                        help="with --server: stop when the export's files pass N bytes in all (suffixes K, M, G, T; "
                             "default: no cap; the downloads always keep 1 GiB of the disk free)")
    return parent


def _write_back_server_and_resume() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--write-back-server", metavar="URL", help="write back to this server (default: --server)")
    parent.add_argument("--resume", action="store_true",
                        help="reuse the finished pieces of an interrupted run into the same --out with the same inputs and settings")
    return parent


def _progress_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    return parent


def _engine_options() -> argparse.ArgumentParser:
    """``--engine`` and the Spark engine's options (docs/spark.md)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="local: worker processes on this machine (default); spark: Apache Spark (extra "
                             "milan-fhir[spark]), same outputs")
    parent.add_argument("--spark-master", metavar="URL",
                        help="with --engine spark: the Spark master, e.g. local[2] (default: Spark's own, local[*])")
    parent.add_argument("--parquet", metavar="URI",
                        help="with --engine spark: also write the results as Parquet under URI/results")
    return parent


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    return add_command(
        subparsers,
        "cohort",
        help="screen a whole FHIR Bulk Data export (NDJSON folder or a server's $export) with a report",
        description=textwrap.fill(
            "Screen every patient with a primary neuroendocrine tumour or liver metastases in a FHIR Bulk Data "
            "export against the Milan criteria, streaming (bounded memory) and in parallel, and report how many "
            "are within Milan and which criterion keeps the others out.",
            width=100,
        ),
        epilog=_EPILOG,
        parents=[
            _source_argument(),
            out_option("folder for the outputs (created if needed)", required=True),
            as_of_option(),
            rule_set_option(),
            mappings_option(),
            _workers_option(),
            server_option("run a FHIR Bulk Data $export on this server instead of reading SOURCE"),
            _export_options(),
            write_back_option("write the RiskAssessments to --server (or to --write-back-server); unchanged ones are "
                              "not rewritten"),
            _write_back_server_and_resume(),
            all_patients_option("evaluate every patient of the export, not only those with a primary NET or liver "
                                "metastases"),
            _progress_option(),
            _engine_options(),
            smart_options(),
        ],
        run=run,
    )


def _check(args: argparse.Namespace) -> None:
    """The option combinations that cannot work, refused before any long work."""
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {args.workers})")
    if args.group and not args.server:
        raise InputError("--group needs --server")
    if args.write_back and not (args.write_back_server or args.server):
        raise InputError("--write-back needs --server URL or --write-back-server URL")
    if args.server and args.source:
        raise InputError("give either SOURCE or --server, not both")
    if not args.server and not args.source:
        raise InputError("no input: give SOURCE (a folder of NDJSON files) or --server URL (see 'milan-fhir cohort --help')")
    if args.engine != "spark" and (args.spark_master or args.parquet):
        raise InputError("--spark-master and --parquet need --engine spark")
    if args.engine == "spark" and args.resume:
        raise InputError("--resume works with --engine local only (a Spark run recomputes lost partitions itself)")
    if args.write_back and args.as_of is None:
        warn("--write-back without --as-of evaluates as of today: results that change with the date are written "
             "again on another day (and differ from an evaluate run with its own --as-of); give --as-of")


def _export(args: argparse.Namespace) -> tuple[str, Any]:
    """Run the server's $export into OUT/export: the folder to screen, and the token source for the write-back
    (the SMART auth renews its token in the write-back workers on a 401)."""
    from .._cohort._export import bulk_export

    same_server = bool(args.write_back and not args.write_back_server)
    smart = smart_auth_from_args(args, args.server, write=same_server)
    token: Any = smart.access_token if smart is not None and same_server else bearer_token()
    client = server_client(args, smart)
    with client:
        result = bulk_export(client, args.out / "export", group=args.group, poll_cap=args.poll_cap,
                             max_bytes=args.max_download_bytes)
    if not result.files:
        raise InputError("the server's export holds no files (no Patient, Condition, Observation or Procedure?)",
                         file=args.server)
    return str(args.out / "export"), token


def run(args: argparse.Namespace) -> int:
    from .._cohort import render_text, run_cohort
    from .._runtime import resolve_mappings

    as_of = parse_as_of(args.as_of)
    _check(args)
    progress = not args.no_progress and sys.stderr.isatty()
    # settle mappings and rule set before any long work
    resolve_mappings(args.mappings or None).rule_set(args.rule_set)

    source, token = _export(args) if args.server else (args.source, bearer_token())
    wb_url = args.write_back_server or args.server
    write_back = {"base_url": wb_url, "token": token} if args.write_back else None
    try:
        if args.engine == "spark":
            summary = _run_spark(args, source, as_of, write_back)
        else:
            summary = run_cohort(
                source, args.out, as_of=as_of, rule_set=args.rule_set, mappings=args.mappings, workers=args.workers,
                resume=args.resume, progress=progress, all_patients=args.all_patients, write_back=write_back,
            )
    except OSError as exc:  # a full disk, a folder we may not write to: the user can fix it
        raise InputError(f"cannot read or write: {exc.strerror or exc}", file=str(exc.filename or args.out)) from None
    print(render_text(summary))
    if "write_back" in summary:
        wb = summary["write_back"]
        print(f"\nWrite-back to {wb['server']}: {wb['created']} created, {wb['updated']} updated, "
              f"{wb['unchanged']} unchanged, {wb['failed']} failed (see write-back.ndjson)")
    print(f"\nOutputs in {args.out}: " + ", ".join(summary["outputs"]))
    return EXIT_OK


def _run_spark(args: argparse.Namespace, source: str, as_of: Any, write_back: dict[str, Any] | None) -> Any:
    """The screen on a Spark session of its own (pyspark is imported only here)."""
    try:
        from pyspark.sql import SparkSession

        from .. import spark as engine
    except ImportError as exc:
        raise InputError(f"--engine spark needs PySpark: pip install 'milan-fhir[spark]' ({exc})") from None
    own = SparkSession.getActiveSession() is None  # a session already running in this process is reused, not stopped
    spark = engine.session(args.spark_master, config={"spark.ui.showConsoleProgress": "false"})
    try:
        if own:
            spark.sparkContext.setLogLevel("ERROR")
        return engine.run_cohort(spark, source, args.out, as_of=as_of, rule_set=args.rule_set, mappings=args.mappings,
                                 all_patients=args.all_patients, parquet=args.parquet or False, write_back=write_back)
    finally:
        if own:
            spark.stop()
