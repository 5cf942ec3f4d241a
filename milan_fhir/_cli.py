"""The ``milan-fhir`` command line (criteria.md §6).

Structure, for whoever adds a command: every subcommand is one ``_add_<name>(subparsers)`` function that
registers its parser and sets ``run=<function(args) -> int>`` on it; :data:`COMMANDS` lists them in help order.
A command raises :class:`~milan_fhir.errors.MilanFhirError` for anything the user can fix; :func:`main` turns it
into one line ``milan-fhir: error: ...`` on stderr and exit status 2, never a traceback. Warnings go through
:func:`warn`. Output helpers (:func:`emit`, :func:`write_out_dir`) are shared by commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence

import orjson

from .errors import InputError, MilanFhirError

__all__ = ["main", "COMMANDS", "warn", "error_line", "report_problems", "emit", "write_out_dir", "parse_as_of"]

PROG = "milan-fhir"
EXIT_OK = 0
EXIT_ERROR = 2
#: at most this many input warnings are printed one by one; the rest are counted in one summary line
MAX_WARNINGS = 200

FORMATS = ("table", "json", "fhir")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------------------------------------ messages
def warn(message: str) -> None:
    print(f"{PROG}: warning: {' '.join(message.split())}", file=sys.stderr)


def error_line(message: str) -> str:
    return f"{PROG}: error: {' '.join(str(message).split())}"


def _problem_text(problem: Any) -> str:
    """``FILE:LINE RESOURCE field F: reason`` for an InputProblem."""
    parts = []
    file, line = getattr(problem, "file", None), getattr(problem, "line", None)
    if file:
        parts.append(f"{file}:{line}" if line is not None else str(file))
    elif line is not None:
        parts.append(f"item {line}")
    if getattr(problem, "resource", None):
        parts.append(str(problem.resource))
    if getattr(problem, "field", None):
        parts.append(f"field {problem.field}")
    reason = getattr(problem, "reason", None) or str(problem)
    return f"{' '.join(parts)}: {reason}" if parts else str(reason)


def report_problems(problems: Sequence[Any]) -> None:
    """Every input problem as one warning line on stderr (the first MAX_WARNINGS; then a count)."""
    for p in problems[:MAX_WARNINGS]:
        warn(_problem_text(p))
    if len(problems) > MAX_WARNINGS:
        warn(f"... and {len(problems) - MAX_WARNINGS} more input problems (each resource was skipped)")


def parse_as_of(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of {text!r} is not a date; expected YYYY-MM-DD, e.g. 2026-01-15") from None


# ------------------------------------------------------------------------------------------------ output
def _write(text: str) -> None:
    sys.stdout.write(text)


def emit(evaluations: Sequence[Any], fmt: str, mappings: Any) -> None:
    """Print the evaluations on stdout in one of :data:`FORMATS`."""
    from ._writers import fhir, json_lines, table

    if fmt == "json":
        for ev in evaluations:
            _write(orjson.dumps(json_lines.to_json(ev)).decode() + "\n")
    elif fmt == "fhir":
        for ev in evaluations:
            _write(orjson.dumps(fhir.risk_assessment(ev, mappings)).decode() + "\n")
    else:
        _write(table.render(evaluations))
    sys.stdout.flush()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _file_stem(patient: str) -> str:
    pid = patient.rsplit("/", 1)[-1] or patient
    return _UNSAFE.sub("_", pid)


def write_out_dir(out: Path, evaluations: Sequence[Any], mappings: Any) -> list[Path]:
    """``<patient-id>.<rule-set>.json`` (the RiskAssessment) per evaluation and ``results.ndjson`` (JSON lines)."""
    from ._writers import fhir, json_lines

    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for ev in evaluations:
            path = out / f"{_file_stem(ev.patient)}.{_UNSAFE.sub('_', ev.rule_set)}.json"
            path.write_bytes(orjson.dumps(fhir.risk_assessment(ev, mappings), option=orjson.OPT_INDENT_2) + b"\n")
            written.append(path)
        results = out / "results.ndjson"
        with open(results, "wb") as fh:
            json_lines.write_lines(evaluations, fh)
        written.append(results)
    except OSError as exc:
        raise InputError(f"cannot write the output: {exc.strerror or exc}", file=str(exc.filename or out)) from None
    return written


# ------------------------------------------------------------------------------------------------ evaluate
_EVALUATE_EPILOG = """\
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
"""


def _add_evaluate(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate every patient of a FHIR file or folder against the Milan criteria",
        description=textwrap.fill(
            "Evaluate every patient found in PATH against the Milan criteria for liver transplantation in "
            "neuroendocrine tumour liver metastases. Each of the six criteria is met, not met or indeterminate, "
            "with a reason citing its sources; the verdict is eligible, ineligible or indeterminate.",
            width=100,
        ),
        epilog=_EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # PATH is checked in _run_evaluate, not by argparse, so that another source option (a server) can replace it
    p.add_argument(
        "path", metavar="PATH", nargs="?", help="a FHIR Bundle or resource (JSON), an NDJSON file, or a folder of them"
    )
    p.add_argument(
        "--as-of", metavar="YYYY-MM-DD", help="evaluate as of this date; only data on or before it counts (default: today, UTC)"
    )
    p.add_argument("--rule-set", metavar="NAME", help="rule set to apply: milan-net (default) or milan-2007, or one of your mappings")
    p.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table: for people (default); json: one JSON object per patient per line; fhir: one RiskAssessment per line",
    )
    p.add_argument(
        "--mappings", metavar="FILE", action="append", default=[],
        help="a YAML mapping file (or folder) layered on the default codes; repeat to layer several, in order",
    )
    p.add_argument(
        "--out", metavar="DIR", type=Path,
        help="also write <patient-id>.<rule-set>.json (FHIR RiskAssessment) per patient and results.ndjson to DIR",
    )
    p.set_defaults(run=_run_evaluate)
    return p


def _evaluate_source(
    args: argparse.Namespace, mappings: Any, as_of: dt.date | None, problems: list[Any]
) -> list[Any]:
    """The evaluations of the input named on the command line (PATH). Another source (a FHIR server) goes here."""
    from . import _api

    if args.path is None:
        raise InputError("no input: give PATH, a FHIR Bundle, NDJSON file or folder (see 'milan-fhir evaluate --help')")
    evaluations = _api.evaluate(args.path, as_of=as_of, rule_set=args.rule_set, mappings=mappings, problems=problems)
    if not evaluations:
        warn(f"{args.path}: no patient found in the input")
    return evaluations


def _run_evaluate(args: argparse.Namespace) -> int:
    from . import _api

    as_of = parse_as_of(args.as_of)
    mappings = _api.resolve_mappings(args.mappings or None)
    mappings.rule_set(args.rule_set)  # an unknown rule set fails before any input is read
    problems: list[Any] = []
    try:
        evaluations = _evaluate_source(args, mappings, as_of, problems)
    finally:
        report_problems(problems)  # what was read before a fatal fault is still reported
    emit(evaluations, args.format, mappings)
    if args.out is not None:
        written = write_out_dir(args.out, evaluations, mappings)
        print(f"{PROG}: wrote {len(written) - 1} RiskAssessment file(s) and results.ndjson to {args.out}", file=sys.stderr)
    return EXIT_OK


def _add_cohort(subparsers: Any) -> argparse.ArgumentParser:
    from ._cohort._command import add_parser

    return add_parser(subparsers)


#: The subcommands, in help order. Each registers its parser and sets ``run`` on it.
COMMANDS: list[Callable[[Any], Any]] = [_add_evaluate, _add_cohort]


def _add_server_commands(subparsers: Any) -> None:
    """``evaluate --server URL --patient ID | --all-patients [--write-back]`` and ``upload PATH --server URL``
    (milan_fhir/_client/_cli.py)."""
    from ._client._cli import add_commands

    add_commands(subparsers)


COMMANDS.append(_add_server_commands)


def _add_serve_and_smart(subparsers: Any) -> None:
    """``serve`` (the CDS Hooks service, milan_fhir/_service/_cli.py) and the SMART Backend Services options of
    the server commands (milan_fhir/_client/_smart.py)."""
    from ._client._smart import add_smart_options
    from ._service._cli import add_parser

    for name in ("evaluate", "cohort", "upload"):
        if name in subparsers.choices:
            add_smart_options(subparsers.choices[name])
    add_parser(subparsers)


COMMANDS.append(_add_serve_and_smart)


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    from ._runtime import software_version

    parser = _Parser(
        prog=PROG,
        description=(
            "milan-fhir decides, from FHIR R4 data, whether a patient with neuroendocrine tumour (NET) liver "
            "metastases meets the Milan criteria for liver transplantation."
        ),
        epilog="Run 'milan-fhir COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {software_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0: done, 2: unusable input or options)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    try:
        return int(args.run(args))
    except MilanFhirError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `milan-fhir evaluate ... | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK

