"""``milan-fhir evaluate``: every patient of a file or folder (PATH), or of a FHIR server (``--server URL
--patient ID [--patient ID ...] | --all-patients [--write-back]``), evaluated against the Milan criteria.

The bearer token, if the server needs one, comes from the environment variable ``MILAN_FHIR_TOKEN`` (never from
the command line, where it would show in the process list and the shell history).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from ..errors import InputError, printable
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    FORMATS,
    MAX_WARNINGS,
    PROG,
    as_of_option,
    emit,
    mappings_option,
    out_option,
    parse_as_of,
    report_problems,
    rule_set_option,
    server_client,
    server_option,
    smart_auth_from_args,
    smart_options,
    timeout_option,
    warn,
    write_out,
)

if TYPE_CHECKING:
    import datetime as dt

    from .._client import FhirClient, PatientSelection
    from .._domain import Evaluation
    from .._mappings import Mappings

__all__ = ["add_parser", "run"]

_SERVER_GROUP = "FHIR server"

_EPILOG = """\
examples:
  milan-fhir evaluate patient-bundle.json
      one table per patient in the Bundle, as of today (UTC)
  milan-fhir evaluate export/ --as-of 2026-01-15 --format json > results.ndjson
      every Bundle / NDJSON file in the folder; one JSON object per patient per line
  milan-fhir evaluate patients.ndjson --rule-set milan-2007 --mappings local-codes.yaml
      the 2007 rule set, with a hospital's own codes layered on the defaults
  milan-fhir evaluate export/ --format fhir --out assessments/
      one FHIR RiskAssessment per patient per line, and the same written as files in assessments/

exit status: 0 whatever the verdicts (resources that cannot be used are reported on stderr as warnings and
skipped); 2 when the input, the mappings or an option cannot be used at all.

reading from a FHIR server:
  milan-fhir evaluate --server http://localhost:8080/fhir --patient 123 --patient 456
      evaluate two patients of the server (at most 2 requests each to read them)
  milan-fhir evaluate --server http://localhost:8080/fhir --all-patients --as-of 2026-06-30 --write-back
      every Patient on the server (paged; the count is checked against the server's); write each
      RiskAssessment (with its Provenance) back, one transaction per patient, nothing when unchanged
  MILAN_FHIR_TOKEN=... milan-fhir evaluate --server https://ehr.example.org/fhir --patient 123
      with a bearer token
"""


def _path_argument() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    # PATH is checked in run, not by argparse: --server replaces it
    parent.add_argument(
        "path", metavar="PATH", nargs="?",
        help="a FHIR Bundle or resource (JSON), an NDJSON file, or a folder of them (or --server)",
    )
    return parent


def _format_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table: for people (default); json: one JSON object per patient per line; fhir: one RiskAssessment per line",
    )
    return parent


def _server_selection() -> argparse.ArgumentParser:
    """``--patient``, ``--all-patients``, ``--write-back`` and ``--max-response-mb`` (group "FHIR server")."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group(_SERVER_GROUP)
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
    return parent


def _response_cap() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument_group(_SERVER_GROUP).add_argument(
        "--max-response-mb", metavar="MB", type=float, default=64,
        help="the largest server answer read, in MiB (64); a larger one is an error",
    )
    return parent


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="evaluate every patient of a FHIR file or folder against the Milan criteria",
        description=textwrap.fill(
            "Evaluate every patient found in PATH against the Milan criteria for liver transplantation in "
            "neuroendocrine tumour liver metastases. Each of the six criteria is met, not met or indeterminate, "
            "with a reason citing its sources; the verdict is eligible, ineligible or indeterminate.",
            width=100,
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[
            _path_argument(),
            as_of_option("evaluate as of this date; only data on or before it counts (default: today, UTC)"),
            rule_set_option("rule set to apply: milan-net (default) or milan-2007, or one of your mappings"),
            _format_option(),
            mappings_option("a YAML mapping file (or folder) layered on the default codes; repeat to layer several, "
                            "in order"),
            out_option("also write <patient-id>.<rule-set>.json (FHIR RiskAssessment) per patient and results.ndjson "
                       "to DIR"),
            server_option("read patients from this FHIR R4 server instead of PATH", group=_SERVER_GROUP),
            _server_selection(),
            timeout_option(30, group=_SERVER_GROUP),
            _response_cap(),
            smart_options(),
        ],
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.server:
        return _run_server(args)
    if args.patient or args.all_patients or args.write_back:
        raise InputError("--patient, --all-patients and --write-back need --server URL")
    return _run_files(args)


def _settle(args: argparse.Namespace) -> tuple[dt.date | None, Mappings]:
    """The as-of date and the mappings, and a check of the rule set: all fail before any input is read."""
    from .._runtime import resolve_mappings

    as_of = parse_as_of(args.as_of)
    mappings = resolve_mappings(args.mappings or None)
    mappings.rule_set(args.rule_set)
    return as_of, mappings


def _output(args: argparse.Namespace, evaluations: list[Evaluation], mappings: Mappings) -> None:
    emit(evaluations, args.format, mappings)
    if args.out is not None:
        write_out(args.out, evaluations, mappings)


# ---------------------------------------------------------------------------------------------- files (PATH)
def _run_files(args: argparse.Namespace) -> int:
    from .. import _api

    as_of, mappings = _settle(args)
    problems: list[Any] = []
    try:
        if args.path is None:
            raise InputError("no input: give PATH, a FHIR Bundle, NDJSON file or folder (see 'milan-fhir evaluate "
                             "--help')")
        evaluations = _api.evaluate(args.path, as_of=as_of, rule_set=args.rule_set, mappings=mappings,
                                    problems=problems)
        if not evaluations:
            warn(f"{args.path}: no patient found in the input")
    finally:
        report_problems(problems)  # what was read before a fatal fault is still reported
    _output(args, evaluations, mappings)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- --server
def _run_server(args: argparse.Namespace) -> int:
    if args.path:
        raise InputError("give either PATH or --server, not both")
    if bool(args.patient) == bool(args.all_patients):
        raise InputError("with --server, give --patient ID (one or more) or --all-patients")
    if args.write_back and args.as_of is None:
        warn("--write-back without --as-of evaluates as of today: results that change with the date "
             "(a value gone stale) are written again on another day; give --as-of to pin the date")
    as_of, mappings = _settle(args)
    skipped: list[tuple[str, str]] = []
    selection = None
    auth = smart_auth_from_args(args, args.server, write=bool(args.write_back))
    client = server_client(args, auth, timeout=args.timeout, max_bytes=int(args.max_response_mb * (1 << 20)))
    with client:
        if args.all_patients:
            selection = _list_all(client)
            patients = list(selection.ids)
            skipped.extend(selection.unusable)
        else:
            patients = list(args.patient)
        evaluations = _screen(client, patients, args, as_of, mappings, skipped)
    _output(args, evaluations, mappings)
    incomplete = selection is not None and _summarise(selection, len(evaluations), skipped)
    return EXIT_ERROR if skipped or incomplete else EXIT_OK


def _list_all(client: FhirClient) -> PatientSelection:
    from .._client import list_patients

    selection = list_patients(client)
    counted = "" if selection.server_total is None else f" (the server counts {selection.server_total})"
    print(f"{PROG}: {len(selection.ids)} patient(s) listed on {client.base_url}{counted}: screening every one",
          file=sys.stderr)
    return selection


def _screen(
    client: FhirClient, patients: list[str], args: argparse.Namespace, as_of: dt.date | None, mappings: Mappings,
    skipped: list[tuple[str, str]],
) -> list[Evaluation]:
    """Evaluate (and with --write-back write back) each patient; one that cannot be read is skipped with a
    warning, a server that is gone or refuses us ends the run."""
    from .._client import evaluate_on_server
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError

    evaluations = []
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
            warn(f"patient {pid}: {exc}")
            continue
        finally:
            report_problems(problems)
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
            print(f"{PROG}: {printable(result.evaluation.patient)}: {what}", file=sys.stderr)
    return evaluations


def _summarise(selection: PatientSelection, screened: int, skipped: list[tuple[str, str]]) -> bool:
    """The --all-patients summary on stderr; True when the server's count says the listing was incomplete."""
    on_server = selection.server_total if selection.server_total is not None else len(selection.ids)
    line = f"{on_server} patient(s) on the server, {screened} screened, {len(skipped)} skipped"
    if not selection.complete:
        line += (f"; the server counts {selection.server_total} Patient resources but listed "
                 f"{len(selection.ids) + len(selection.unusable)}: the screen may be incomplete")
    print(f"{PROG}: {line}" + (":" if skipped else ""), file=sys.stderr)
    for what, why in skipped[:MAX_WARNINGS]:
        print(f"{PROG}:   {printable(what)}: {' '.join(printable(why).split())}", file=sys.stderr)
    return not selection.complete
