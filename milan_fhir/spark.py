"""Screening FHIR Bulk exports on Apache Spark (extra ``milan-fhir[spark]``, PySpark 4; docs/spark.md).

The executors run the **same** code as ``milan-fhir cohort``: the raw-bytes prefilter, the line reader, the
adapters (to compact facts), the record builder (first copy of a duplicate wins, in file and line order) and the
evaluator; no rule is written in Spark SQL. Results are therefore those of the local engine, whatever the
partitioning.

- :func:`screen` gives a DataFrame of results (``patient``, ``verdict``, ``result``, ``risk_assessment``).
- :func:`run_cohort` writes the local engine's outputs into a folder (``results.ndjson``,
  ``risk-assessments.ndjson``, ``errors.ndjson``, ``summary.json``, ``report.html``), optionally Parquet and a
  write-back to a FHIR server from the driver, and returns a :class:`CohortResult`.
- ``spark-submit`` entry point: this file (``python -m milan_fhir.spark --help``).

Importing :mod:`milan_fhir` never imports pyspark; this module imports it when a function runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from milan_fhir._cohort._run import CohortResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["screen", "run_cohort", "session", "CohortResult", "main"]


def screen(spark: "SparkSession", source: "str | os.PathLike[str] | DataFrame", *, as_of: dt.date | str,
           rule_set: str | None = None, mappings: Iterable[str | os.PathLike[str]] = (),
           all_patients: bool = False, partitions: int | None = None) -> "DataFrame":
    """Screen ``source`` on ``spark``; a DataFrame with one row per patient of the cohort (every patient with
    ``all_patients``): ``patient`` (``Patient/id``), ``verdict``, ``result`` (the JSON line of criteria.md §6,
    with cautions) and ``risk_assessment`` (FHIR R4 JSON).

    ``source``: a path or glob of NDJSON files, plain or ``.gz`` (local, ``s3a://``, ``abfss://``, ``hdfs://``;
    a folder: its ``*.ndjson``, ``*.jsonl``, ``*.json`` files, optionally ``.gz``), or a DataFrame of lines
    (column ``value``; optional ``file`` and 1-based ``line`` for the error reports). ``partitions``: partitions
    of the group/evaluate step (default ``spark.sql.shuffle.partitions``); results never depend on it. The scan
    stays cached on the session until the DataFrame is garbage: call :func:`run_cohort` for the whole outputs.
    """
    from milan_fhir._spark._engine import screen as _screen

    frame: DataFrame = _screen(spark, source, as_of=as_of, rule_set=rule_set, mappings=mappings,
                               all_patients=all_patients, partitions=partitions)
    return frame


def run_cohort(spark: "SparkSession", source: "str | os.PathLike[str] | DataFrame", out: str | os.PathLike[str], *,
               as_of: dt.date | str | None = None, rule_set: str | None = None,
               mappings: Iterable[str | os.PathLike[str]] = (), all_patients: bool = False,
               partitions: int | None = None, parquet: str | os.PathLike[str] | bool = False,
               write_back: dict[str, Any] | None = None) -> CohortResult:
    """Screen ``source`` on ``spark`` and write the outputs of ``milan-fhir cohort`` into the local folder
    ``out`` (byte for byte those of the local engine, ``summary.json``'s ``run`` part aside).

    ``parquet``: also write the results as Parquet (``True``: into ``out/parquet/results``; a path or URI, e.g.
    ``s3a://bucket/screening``: there, ``/results`` below it), written by the executors. ``write_back``: as for
    :func:`milan_fhir.run_cohort` (``{"base_url": ..., "token": ..., "batch_size": 50}``): from the driver, in
    batches, with the cohort's version-aware write-back; ``write-back.ndjson`` says what was done.
    """
    from milan_fhir._spark._engine import run_cohort as _run_cohort

    return _run_cohort(spark, source, out, as_of=as_of, rule_set=rule_set, mappings=mappings,
                       all_patients=all_patients, partitions=partitions, parquet=parquet, write_back=write_back)


def session(master: str | None = None, app_name: str = "milan-fhir", config: dict[str, str] | None = None) -> "SparkSession":
    """A Spark session (``master`` e.g. ``local[2]``; none: what ``spark-submit`` or the environment says), with
    ``config`` settings; on a local master the Python workers run this interpreter."""
    from pyspark.sql import SparkSession

    local = master.startswith("local") if master else "PYSPARK_GATEWAY_PORT" not in os.environ  # not spark-submit
    if local:  # the Python workers run this interpreter (its packages)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    # Spark's own split size (spark.sql.files.maxPartitionBytes, 128 MB) also sizes the byte ranges the executors
    # read from local files: a task costs ~30 ms of Spark's own work, so smaller ones cost more than they balance
    settings = dict(config or {})
    if local:
        # a local session's JVM only moves small batches: its optimising JIT compiler (C2) would cost it more CPU
        # than it saves (measured: 2.3 -> 0.8 CPU s of JVM per 2 M-line scan), taken from the Python workers
        settings.setdefault("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
    for k, v in settings.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit .../milan_fhir/spark.py SOURCE --out DIR [--as-of D]`` (or ``python -m milan_fhir.spark``)."""
    p = argparse.ArgumentParser(prog="milan_fhir.spark", description="Screen a FHIR Bulk export on Apache Spark "
                                "(the outputs of 'milan-fhir cohort', computed by the executors).")
    p.add_argument("source", metavar="SOURCE", help="folder, file or glob of NDJSON files (plain or .gz; s3a://...)")
    p.add_argument("--out", required=True, metavar="DIR", help="local folder for the outputs (on the driver)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="evaluation date (default: today, UTC)")
    p.add_argument("--rule-set", metavar="NAME")
    p.add_argument("--mappings", metavar="FILE", action="append", default=[])
    p.add_argument("--all-patients", action="store_true")
    p.add_argument("--spark-master", metavar="URL", help="e.g. local[4] (default: what spark-submit says)")
    p.add_argument("--partitions", type=int, metavar="N", help="partitions of the group/evaluate step")
    p.add_argument("--parquet", metavar="URI", help="also write the results as Parquet there")
    args = p.parse_args(argv)
    from milan_fhir._cohort import render_text
    from milan_fhir.errors import MilanFhirError

    spark = session(args.spark_master)
    try:
        result = run_cohort(spark, args.source, args.out, as_of=args.as_of, rule_set=args.rule_set,
                            mappings=args.mappings, all_patients=args.all_patients, partitions=args.partitions,
                            parquet=args.parquet or False)
    except MilanFhirError as exc:
        print(f"milan_fhir.spark: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print(render_text(result.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
