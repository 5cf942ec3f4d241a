"""What every command of the ``milan-fhir`` command line shares: the parser class, messages on stderr, the
``--as-of`` parsing, the output writers of ``evaluate``, the options several commands have (as argparse parent
parsers, each option defined once) and the FHIR client the server options describe.

A command raises :class:`~milan_fhir.errors.MilanFhirError` for anything the user can fix; ``main`` turns it into
one line ``milan-fhir: error: ...`` on stderr and exit status 2, never a traceback. Warnings go through
:func:`warn`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

import orjson

from ..errors import InputError, printable

if TYPE_CHECKING:
    from .._adapters._located import InputProblem
    from .._client import FhirClient
    from .._client._smart import SmartBackendAuth
    from .._domain import Evaluation
    from .._mappings import Mappings

__all__ = [
    "PROG", "EXIT_OK", "EXIT_ERROR", "MAX_WARNINGS", "FORMATS", "TOKEN_ENV", "Parser",
    "warn", "error_line", "problem_text", "report_problems", "parse_as_of",
    "emit", "write_out_dir", "write_out",
    "as_of_option", "rule_set_option", "mappings_option", "out_option", "server_option", "timeout_option",
    "smart_options", "bearer_token", "smart_auth_from_args", "server_client",
]

PROG = "milan-fhir"
EXIT_OK = 0
EXIT_ERROR = 2
#: at most this many input warnings are printed one by one; the rest are counted in one summary line
MAX_WARNINGS = 200

FORMATS = ("table", "json", "fhir")

#: the bearer token for the server options comes from this environment variable, never from the command line
#: (where it would show in the process list and the shell history)
TOKEN_ENV = "MILAN_FHIR_TOKEN"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------------------------------------ messages
def warn(message: str) -> None:
    """One warning line on stderr; control characters (ANSI escapes in an id) are shown escaped."""
    print(f"{PROG}: warning: {printable(' '.join(str(message).split()))}", file=sys.stderr)


def error_line(message: str) -> str:
    return f"{PROG}: error: {printable(' '.join(str(message).split()))}"


def problem_text(problem: InputProblem | Any) -> str:
    """``FILE:LINE RESOURCE field F: reason`` for an InputProblem (control characters escaped: one line each)."""
    from .._adapters._located import _clean

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
    text = f"{' '.join(parts)}: {reason}" if parts else str(reason)
    return _clean(text)


def report_problems(problems: Sequence[InputProblem | Any]) -> None:
    """Every input problem as one warning line on stderr (the first MAX_WARNINGS; then a count)."""
    for p in problems[:MAX_WARNINGS]:
        warn(problem_text(p))
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


def emit(evaluations: Sequence[Evaluation], fmt: str, mappings: Mappings) -> None:
    """Print the evaluations on stdout in one of :data:`FORMATS`."""
    from .._writers import fhir, json_lines, table

    if fmt == "json":
        for ev in evaluations:
            _write(orjson.dumps(json_lines.to_json(ev)).decode() + "\n")
    elif fmt == "fhir":
        for ev in evaluations:
            _write(orjson.dumps(fhir.risk_assessment(ev, mappings)).decode() + "\n")
    else:  # for people, often on a terminal: control characters in ids or reasons are shown escaped
        _write(printable(table.render(evaluations)))
    sys.stdout.flush()


def write_out_dir(out: Path, evaluations: Sequence[Evaluation], mappings: Mappings) -> list[Path]:
    """``<patient-id>.<rule-set>.json`` (the RiskAssessment) per evaluation and ``results.ndjson`` (JSON lines),
    each written through :mod:`milan_fhir._sink` (temporary file, fsync, rename; no symlink followed; mode 0600;
    distinct names even when two ids differ only by case or by characters a file name cannot hold)."""
    from .. import _sink
    from .._writers import fhir, json_lines

    folder = _sink.ensure_dir(out)
    _sink.clean_stale(folder)
    claims = _sink.NameClaims(reserved=("results.ndjson",))
    written = []
    for ev in evaluations:
        pid = ev.patient.rsplit("/", 1)[-1] or ev.patient
        name = claims.claim(f"{_sink.safe_name(pid)}.{_sink.safe_name(ev.rule_set)}", ".json", ev.patient)
        written.append(_sink.write_bytes(folder / name, orjson.dumps(fhir.risk_assessment(ev, mappings),
                                                                     option=orjson.OPT_INDENT_2) + b"\n"))
    with _sink.atomic_open(folder / "results.ndjson") as fh:
        json_lines.write_lines(evaluations, fh)
    written.append(folder / "results.ndjson")
    return written


def write_out(out: Path, evaluations: Sequence[Evaluation], mappings: Mappings) -> list[Path]:
    """:func:`write_out_dir`, and one line on stderr saying how many files were written where."""
    written = write_out_dir(out, evaluations, mappings)
    print(f"{PROG}: wrote {len(written) - 1} RiskAssessment file(s) and results.ndjson to {printable(str(out))}",
          file=sys.stderr)
    return written


# ------------------------------------------------------------------------------------------------ shared options
# Each function returns a fresh parent parser (argparse ``parents=[...]``) holding one option shared by several
# commands: its flag, metavar, type, action and default are defined here once. A command may word the help for its
# own context (``--as-of`` of ``serve`` is read at each call); the option itself does not change.
def _parent(group: str | None = None, description: str | None = None) -> tuple[argparse.ArgumentParser, Any]:
    parent = argparse.ArgumentParser(add_help=False)
    return parent, (parent.add_argument_group(group, description) if group else parent)


def as_of_option(help: str = "evaluate as of this date (default: today, UTC)") -> argparse.ArgumentParser:
    parent, g = _parent()
    g.add_argument("--as-of", metavar="YYYY-MM-DD", help=help)
    return parent


def rule_set_option(help: str = "milan-net (default) or milan-2007, or one of your mappings") -> argparse.ArgumentParser:
    parent, g = _parent()
    g.add_argument("--rule-set", metavar="NAME", help=help)
    return parent


def mappings_option(
    help: str = "a YAML mapping file (or folder) layered on the default codes; repeatable",
) -> argparse.ArgumentParser:
    parent, g = _parent()
    g.add_argument("--mappings", metavar="FILE", action="append", default=[], help=help)
    return parent


def out_option(help: str, *, required: bool = False) -> argparse.ArgumentParser:
    parent, g = _parent()
    g.add_argument("--out", metavar="DIR", type=Path, required=required, help=help)
    return parent


def server_option(help: str, *, required: bool = False, group: str | None = None) -> argparse.ArgumentParser:
    parent, g = _parent(group)
    g.add_argument("--server", metavar="URL", required=required, help=help)
    return parent


def timeout_option(default: float, *, group: str | None = None) -> argparse.ArgumentParser:
    parent, g = _parent(group)
    g.add_argument("--timeout", metavar="SECONDS", type=float, default=default,
                   help=f"seconds to wait for each answer ({default})")
    return parent


def smart_options() -> argparse.ArgumentParser:
    """The SMART Backend Services options of the server commands (``evaluate --server``, ``cohort --server``,
    ``upload``); each falls back to its environment variable."""
    from .._client._smart import SMART_ENV

    parent, g = _parent(
        "SMART Backend Services",
        "get short-lived tokens with a signed client assertion instead of MILAN_FHIR_TOKEN (see docs/smart.md); "
        "each option falls back to its environment variable",
    )
    g.add_argument("--smart-client-id", metavar="ID", help=f"the registered client id ({SMART_ENV['client_id']})")
    g.add_argument("--smart-key", metavar="FILE",
                   help=f"the private key, a PEM or JWK file, RSA or EC P-384 ({SMART_ENV['key']})")
    g.add_argument("--smart-kid", metavar="KID",
                   help=f"the key id registered with the server (default: the JWK's, or the key thumbprint) ({SMART_ENV['kid']})")
    g.add_argument("--smart-token-url", metavar="URL",
                   help=f"token endpoint when the server advertises none in .well-known/smart-configuration ({SMART_ENV['token_url']})")
    g.add_argument("--smart-scope", metavar="SCOPE", action="append", default=None,
                   help=f"a scope to ask for, repeatable (default: system/<Type>.rs or .read) ({SMART_ENV['scopes']}, space-separated)")
    return parent


# ------------------------------------------------------------------------------------------------ server access
def bearer_token() -> str | None:
    """The bearer token of :data:`TOKEN_ENV` (surrounding white space removed), or None."""
    return os.environ.get(TOKEN_ENV, "").strip() or None


def smart_auth_from_args(args: argparse.Namespace, base_url: str, *, write: bool = False) -> SmartBackendAuth | None:
    """The :class:`SmartBackendAuth` the options (or the environment) ask for, or None when none is set up. An
    option given on the command line wins over its environment variable."""
    from .._client._smart import SMART_ENV, SmartBackendAuth

    def opt(name: str) -> str | None:
        value: str | None = getattr(args, f"smart_{name}", None)
        if value is None or value == "":
            value = os.environ.get(SMART_ENV[name], "").strip() or None
        return value

    client_id = opt("client_id")
    key = opt("key")
    if client_id is None and key is None:
        return None
    if client_id is None or key is None:
        raise InputError(
            f"SMART Backend Services needs both a client id (--smart-client-id or {SMART_ENV['client_id']}) and a "
            f"private key file (--smart-key or {SMART_ENV['key']})"
        )
    if bearer_token():
        raise InputError(f"give either {TOKEN_ENV} or SMART Backend Services options, not both")
    scopes: list[str] | None = getattr(args, "smart_scope", None) or None
    if scopes is None and os.environ.get(SMART_ENV["scopes"], "").strip():
        scopes = os.environ[SMART_ENV["scopes"]].split()
    return SmartBackendAuth(
        client_id, Path(key), fhir_base_url=base_url, token_url=opt("token_url"), scopes=scopes, write=write,
        kid=opt("kid"),
    )


def server_client(
    args: argparse.Namespace, auth: SmartBackendAuth | None, *, timeout: float | None = None,
    max_bytes: int | None = None,
) -> FhirClient:
    """The :class:`FhirClient` for ``--server``: the bearer token of :data:`TOKEN_ENV`, or ``auth`` (from
    :func:`smart_auth_from_args`); ``timeout`` and ``max_bytes`` as the command's options say (None: the client's
    defaults)."""
    from .._client import FhirClient

    extra: dict[str, Any] = {}
    if timeout is not None:
        extra["timeout"] = timeout
    if max_bytes is not None:
        extra["max_bytes"] = max_bytes
    return FhirClient(args.server, token=bearer_token(), auth=auth, **extra)
