"""``milan-fhir cohort``: the command-line face of :func:`run_cohort` (registered by ``milan_fhir._cli``)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  milan-fhir cohort export/ --out screening/ --as-of 2026-01-15
      every NDJSON file in export/ (plain or .gz, any naming); outputs in screening/
  milan-fhir cohort export/ --out screening/ --workers 4 --resume
      4 worker processes; reuse what an interrupted run into screening/ already finished
  milan-fhir cohort --server https://fhir.example.org/fhir --group net-registry --out screening/ --write-back
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "cohort",
        help="screen a whole FHIR Bulk Data export (NDJSON folder or a server's $export) with a report",
        description=textwrap.fill(
            "Screen every patient with a primary neuroendocrine tumour or liver metastases in a FHIR Bulk Data "
            "export against the Milan criteria, streaming (bounded memory) and in parallel, and report how many "
            "are within Milan and which criterion keeps the others out.",
            width=100,
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", nargs="?",
                   help="a folder of NDJSON files (plain or .gz, any naming, resource types mixed or not), or one file")
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="folder for the outputs (created if needed)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="evaluate as of this date (default: today, UTC)")
    p.add_argument("--rule-set", metavar="NAME", help="milan-net (default) or milan-2007, or one of your mappings")
    p.add_argument("--mappings", metavar="FILE", action="append", default=[],
                   help="a YAML mapping file (or folder) layered on the default codes; repeatable")
    p.add_argument("--workers", metavar="N", type=int, default=min(os.cpu_count() or 1, 8),
                   help="worker processes (default: the number of CPUs, at most 8); results do not depend on it")
    p.add_argument("--server", metavar="URL", help="run a FHIR Bulk Data $export on this server instead of reading SOURCE")
    p.add_argument("--group", metavar="ID", help="with --server: export Group/ID only (default: system-level export)")
    p.add_argument("--poll-cap", metavar="SECONDS", type=float, default=30.0,
                   help="with --server: the longest wait between status polls, whatever Retry-After asks (default 30)")
    p.add_argument("--write-back", action="store_true",
                   help="write the RiskAssessments to --server (or to --write-back-server); unchanged ones are not rewritten")
    p.add_argument("--write-back-server", metavar="URL", help="write back to this server (default: --server)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished pieces of an interrupted run into the same --out with the same inputs and settings")
    p.add_argument("--all-patients", action="store_true",
                   help="evaluate every patient of the export, not only those with a primary NET or liver metastases")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .._cli import parse_as_of
    from ._report import render_text
    from ._run import run_cohort

    as_of = parse_as_of(args.as_of)
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {args.workers})")
    if args.group and not args.server:
        raise InputError("--group needs --server")
    wb_url = args.write_back_server or args.server
    if args.write_back and not wb_url:
        raise InputError("--write-back needs --server URL or --write-back-server URL")
    if args.server and args.source:
        raise InputError("give either SOURCE or --server, not both")
    if not args.server and not args.source:
        raise InputError("no input: give SOURCE (a folder of NDJSON files) or --server URL (see 'milan-fhir cohort --help')")
    token = os.environ.get("MILAN_FHIR_TOKEN") or None
    progress = not args.no_progress and sys.stderr.isatty()

    # settle mappings and rule set before any long work
    from .._runtime import resolve_mappings

    resolve_mappings(args.mappings or None).rule_set(args.rule_set)

    source = args.source
    if args.server:
        from .._client import FhirClient
        from ._export import bulk_export

        from .._client._smart import smart_auth_from_args

        smart = smart_auth_from_args(args, args.server, write=bool(args.write_back and not args.write_back_server))
        if smart is not None and args.write_back and not args.write_back_server:
            token = smart.access_token  # the write-back workers renew it on a 401
        with FhirClient(args.server, token=token, auth=smart) as client:
            result = bulk_export(client, args.out / "export", group=args.group, poll_cap=args.poll_cap)
        source = str(args.out / "export")
        if not result.files:
            raise InputError("the server's export holds no files (no Patient, Condition, Observation or Procedure?)",
                             file=args.server)
    try:
        summary = run_cohort(
            source, args.out, as_of=as_of, rule_set=args.rule_set, mappings=args.mappings, workers=args.workers,
            resume=args.resume, progress=progress, all_patients=args.all_patients,
            write_back={"base_url": wb_url, "token": token} if args.write_back else None,
        )
    except OSError as exc:  # a full disk, a folder we may not write to: the user can fix it
        raise InputError(f"cannot read or write: {exc.strerror or exc}", file=str(exc.filename or args.out)) from None
    print(render_text(summary))
    if "write_back" in summary:
        wb = summary["write_back"]
        print(f"\nWrite-back to {wb['server']}: {wb['created']} created, {wb['updated']} updated, "
              f"{wb['unchanged']} unchanged, {wb['failed']} failed (see write-back.ndjson)")
    print(f"\nOutputs in {args.out}: " + ", ".join(summary["outputs"]))
    return 0
