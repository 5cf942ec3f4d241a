"""Server commands of the ``milan-fhir`` command line, registered through ``milan_fhir._cli.COMMANDS``.

- ``milan-fhir evaluate --server URL --patient ID [--patient ID ...] | --all-patients [--write-back]``: the
  ``evaluate`` command reads patients from a FHIR server instead of PATH (same output options).
- ``milan-fhir upload PATH --server URL``: post FHIR Bundles (a file or a folder) to a server as transactions.

The bearer token, if the server needs one, comes from the environment variable ``MILAN_FHIR_TOKEN`` (never from
the command line, where it would show in the process list and the shell history).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_commands"]

TOKEN_ENV = "MILAN_FHIR_TOKEN"

_SERVER_EPILOG = """
reading from a FHIR server:
  milan-fhir evaluate --server http://localhost:8080/fhir --patient 123 --patient 456
      evaluate two patients of the server (at most 2 requests each to read them)
  milan-fhir evaluate --server http://localhost:8080/fhir --all-patients --as-of 2026-06-30 --write-back
      every Patient on the server (paged; the count is checked against the server's); write each
      RiskAssessment (with its Provenance) back, one transaction per patient, nothing when unchanged
  MILAN_FHIR_TOKEN=... milan-fhir evaluate --server https://ehr.example.org/fhir --patient 123
      with a bearer token
"""


def add_commands(subparsers: Any) -> None:
    _extend_evaluate(subparsers)
    _add_upload(subparsers)


# ---------------------------------------------------------------------------------------------- evaluate


def _extend_evaluate(subparsers: Any) -> None:
    from ..errors import InputError
    p = subparsers.choices.get("evaluate")
    if p is None:  # pragma: no cover - the evaluate command is always registered first
        return
    for action in p._actions:  # PATH becomes optional: --server replaces it
        if action.dest == "path":
            action.nargs = "?"
            action.required = False
            action.default = None
            action.help = (action.help or "") + " (or --server)"
    g = p.add_argument_group("FHIR server")
    g.add_argument("--server", metavar="URL", help="read patients from this FHIR R4 server instead of PATH")
    g.add_argument(
        "--patient", metavar="ID", action="append", default=[],
        help="a patient id on the server (123 or Patient/123); repeat for several",
    )
    g.add_argument(
        "--all-patients", action="store_true",
        help="every Patient on the server (paged, checked against the server's count); the summary says how many were "
             "on the server, screened and skipped (and why)",
    )
    g.add_argument(
        "--write-back", action="store_true",
        help="write each RiskAssessment and its Provenance to the server (nothing when unchanged)",
    )
    g.add_argument("--timeout", metavar="SECONDS", type=float, default=30, help="seconds to wait for each answer (30)")
    g.add_argument("--max-response-mb", metavar="MB", type=float, default=64,
                   help="the largest server answer read, in MiB (64); a larger one is an error")
    p.epilog = (p.epilog or "") + _SERVER_EPILOG
    local_run = p.get_default("run")

    def run(args: argparse.Namespace) -> int:
        if args.server:
            return _run_server_evaluate(args, p)
        if args.patient or args.all_patients or args.write_back:
            raise InputError("--patient, --all-patients and --write-back need --server URL")
        return local_run(args)

    p.set_defaults(run=run)


def _client(args: argparse.Namespace) -> Any:
    from ._client import FhirClient

    from ._smart import smart_auth_from_args

    token = os.environ.get(TOKEN_ENV, "").strip() or None
    auth = smart_auth_from_args(args, args.server, write=bool(getattr(args, "write_back", False) or args.command == "upload"))
    max_mb = getattr(args, "max_response_mb", 64)
    return FhirClient(args.server, token=token, timeout=args.timeout, auth=auth, max_bytes=int(max_mb * (1 << 20)))


def _run_server_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import _cli
    from .._runtime import resolve_mappings
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError, InputError, printable
    from ._server import evaluate_on_server, list_patients

    if args.path:
        raise InputError("give either PATH or --server, not both")
    if bool(args.patient) == bool(args.all_patients):
        raise InputError("with --server, give --patient ID (one or more) or --all-patients")
    if args.write_back and args.as_of is None:
        _cli.warn("--write-back without --as-of evaluates as of today: results that change with the date "
                  "(a value gone stale) are written again on another day; give --as-of to pin the date")
    as_of = _cli.parse_as_of(args.as_of)
    mappings = resolve_mappings(args.mappings or None)
    mappings.rule_set(args.rule_set)  # an unknown rule set fails before any request
    evaluations = []
    skipped: list[tuple[str, str]] = []
    selection = None
    with _client(args) as client:
        if args.all_patients:
            selection = list_patients(client)
            patients = list(selection.ids)
            counted = "" if selection.server_total is None else f" (the server counts {selection.server_total})"
            print(f"{_cli.PROG}: {len(patients)} patient(s) listed on {client.base_url}{counted}: screening every "
                  "one", file=sys.stderr)
            skipped.extend(selection.unusable)
        else:
            patients = list(args.patient)
        for pid in patients:
            problems: list[Any] = []
            try:
                result = evaluate_on_server(
                    client, pid, as_of=as_of, rule_set=args.rule_set, mappings=mappings, problems=problems,
                    write=args.write_back,
                )
            except (FhirConnectionError, FhirAuthError):
                raise  # the server is gone or refuses us: no point going on
            except (FhirServerError, InputError) as exc:
                skipped.append((printable(str(pid)), str(exc)))
                _cli.warn(f"patient {pid}: {exc}")
                continue
            finally:
                _cli.report_problems(problems)
            evaluations.append(result.evaluation)
            w = result.written
            if w is not None:
                what = (
                    f"{w.risk_assessment} unchanged (inputs unchanged, nothing written)"
                    if w.action == "unchanged"
                    else f"{w.risk_assessment} {w.action}, with {w.provenance}"
                )
                if w.note:
                    what += f" ({w.note})"
                print(f"{_cli.PROG}: {printable(result.evaluation.patient)}: {what}", file=sys.stderr)
    _cli.emit(evaluations, args.format, mappings)
    if args.out is not None:
        _cli.write_out(args.out, evaluations, mappings)
    incomplete = False
    if selection is not None:
        on_server = selection.server_total if selection.server_total is not None else len(selection.ids)
        line = (f"{on_server} patient(s) on the server, {len(evaluations)} screened, {len(skipped)} skipped")
        if not selection.complete:
            incomplete = True
            line += (f"; the server counts {selection.server_total} Patient resources but listed "
                     f"{len(selection.ids) + len(selection.unusable)}: the screen may be incomplete")
        print(f"{_cli.PROG}: {line}" + (":" if skipped else ""), file=sys.stderr)
        for what, why in skipped[:_cli.MAX_WARNINGS]:
            print(f"{_cli.PROG}:   {printable(what)}: {' '.join(printable(why).split())}", file=sys.stderr)
    return _cli.EXIT_ERROR if skipped or incomplete else _cli.EXIT_OK


# ---------------------------------------------------------------------------------------------- upload

_UPLOAD_EPILOG = """
examples:
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir
      every Bundle of the folder, one transaction per file (PUT per resource id: uploading twice is harmless)
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir --definitions
      also the StructureDefinitions and CodeSystems milan-fhir's RiskAssessments use (for $validate)
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir --exclude '33-*' --exclude '42-*' --exclude '58-*'
      leave out vignette 33 (data about a Patient that does not exist, on purpose: a server that checks
      references refuses it)

exit status: 0 when every file was written; 2 when a file was refused (the others are still written; a refused
file is written not at all, a transaction being all or nothing).
"""


def _add_upload(subparsers: Any) -> argparse.ArgumentParser:
    from .. import _cli

    p = subparsers.add_parser(
        "upload",
        help="upload FHIR Bundles (a file or folder) to a FHIR server as transactions",
        description=(
            "Upload FHIR Bundles to a FHIR R4 server, one transaction per file. A collection Bundle becomes a "
            "transaction with a PUT per resource id; references to other entries by fullUrl become Type/id."
        ),
        epilog=_UPLOAD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="a FHIR Bundle (JSON) or a folder of them")
    p.add_argument("--server", metavar="URL", required=True, help="the FHIR R4 server base URL")
    p.add_argument("--definitions", action="store_true", help="also upload milan-fhir's StructureDefinitions and CodeSystems")
    p.add_argument("--exclude", metavar="PATTERN", action="append", default=[],
                   help="leave out the files of the folder whose name matches this shell pattern (e.g. '33-*'); repeatable")
    p.add_argument("--tag", metavar="SYSTEM|CODE", help="add this meta.tag to every resource uploaded (to find or purge them later)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=60, help="seconds to wait for each answer (60)")
    p.set_defaults(run=_run_upload)
    _ = _cli  # the shared helpers are imported lazily by the run function
    return p


def _run_upload(args: argparse.Namespace) -> int:
    from .. import _cli
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError, InputError, printable
    from ._upload import bundle_files, read_bundle, upload_bundle
    from ._writeback import upload_definitions

    tag = None
    if args.tag:
        system, sep, code = args.tag.partition("|")
        if not sep or not system or not code:
            raise InputError(f"--tag {args.tag!r} must be SYSTEM|CODE")
        tag = (system, code)
    files = bundle_files(args.path, tuple(args.exclude))
    failed = total = 0
    with _client(args) as client:
        if args.definitions:
            names = upload_definitions(client, tag=tag)
            print(f"{_cli.PROG}: uploaded {len(names)} definitions ({', '.join(names)})", file=sys.stderr)
        for f in files:
            try:
                n = upload_bundle(client, read_bundle(f), tag=tag, file=str(f))
            except (FhirConnectionError, FhirAuthError):
                raise
            except (FhirServerError, InputError) as exc:
                failed += 1
                _cli.warn(str(exc))
                continue
            total += n
            print(f"{_cli.PROG}: {printable(str(f))}: {n} resources written", file=sys.stderr)
    print(f"{_cli.PROG}: {total} resources from {len(files) - failed} of {len(files)} file(s) written to "
          f"{client.base_url}", file=sys.stderr)
    return _cli.EXIT_ERROR if failed else _cli.EXIT_OK
