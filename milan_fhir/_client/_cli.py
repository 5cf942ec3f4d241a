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
  milan-fhir evaluate --server http://localhost:8080/fhir --all-patients --write-back
      every patient with a NET or metastasis Condition; write each RiskAssessment (with its Provenance) back,
      one transaction per patient, nothing when the inputs are unchanged
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
        help="every patient with a primary NET or metastasis Condition (by the mappings' codes)",
    )
    g.add_argument(
        "--write-back", action="store_true",
        help="write each RiskAssessment and its Provenance to the server (nothing when unchanged)",
    )
    g.add_argument("--timeout", metavar="SECONDS", type=float, default=30, help="seconds to wait for each answer (30)")
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
    return FhirClient(args.server, token=token, timeout=args.timeout, auth=auth)


def _run_server_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import _cli
    from .._runtime import resolve_mappings
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError, InputError
    from ._server import evaluate_on_server, select_patients

    if args.path:
        raise InputError("give either PATH or --server, not both")
    if bool(args.patient) == bool(args.all_patients):
        raise InputError("with --server, give --patient ID (one or more) or --all-patients")
    as_of = _cli.parse_as_of(args.as_of)
    mappings = resolve_mappings(args.mappings or None)
    mappings.rule_set(args.rule_set)  # an unknown rule set fails before any request
    evaluations = []
    failed = 0
    with _client(args) as client:
        patients = list(select_patients(client, mappings)) if args.all_patients else list(args.patient)
        if args.all_patients:
            print(f"{_cli.PROG}: {len(patients)} patient(s) with a NET or metastasis Condition on {client.base_url}", file=sys.stderr)
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
                failed += 1
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
                print(f"{_cli.PROG}: {result.evaluation.patient}: {what}", file=sys.stderr)
    _cli.emit(evaluations, args.format, mappings)
    if args.out is not None:
        written = _cli.write_out_dir(args.out, evaluations, mappings)
        print(f"{_cli.PROG}: wrote {len(written) - 1} RiskAssessment file(s) and results.ndjson to {args.out}", file=sys.stderr)
    return _cli.EXIT_ERROR if failed else _cli.EXIT_OK


# ---------------------------------------------------------------------------------------------- upload

_UPLOAD_EPILOG = """
examples:
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir
      every Bundle of the folder, one transaction per file (PUT per resource id: uploading twice is harmless)
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir --definitions
      also the StructureDefinitions and CodeSystems milan-fhir's RiskAssessments use (for $validate)

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
    p.add_argument("--tag", metavar="SYSTEM|CODE", help="add this meta.tag to every resource uploaded (to find or purge them later)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=60, help="seconds to wait for each answer (60)")
    p.set_defaults(run=_run_upload)
    _ = _cli  # the shared helpers are imported lazily by the run function
    return p


def _run_upload(args: argparse.Namespace) -> int:
    from .. import _cli
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError, InputError
    from ._upload import bundle_files, read_bundle, upload_bundle
    from ._writeback import upload_definitions

    tag = None
    if args.tag:
        system, sep, code = args.tag.partition("|")
        if not sep or not system or not code:
            raise InputError(f"--tag {args.tag!r} must be SYSTEM|CODE")
        tag = (system, code)
    files = bundle_files(args.path)
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
            print(f"{_cli.PROG}: {f}: {n} resources written", file=sys.stderr)
    print(f"{_cli.PROG}: {total} resources from {len(files) - failed} of {len(files)} file(s) written to {args.server}", file=sys.stderr)
    return _cli.EXIT_ERROR if failed else _cli.EXIT_OK
