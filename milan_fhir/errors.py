"""Every exception milan-fhir raises on purpose, in one place.

    MilanFhirError                    base class: catch this to catch them all
    ├── MappingError                  a mapping / rule-set file is unreadable or off its schema
    ├── InputError                    input (file, Bundle, NDJSON line, resource) cannot be read
    │   └── ResourceError             one resource is invalid (it is reported and skipped, never fatal)
    ├── RuleSetError                  an unknown rule set was asked for
    ├── ConfigurationError            a setting (an environment variable) holds a value that cannot be used
    └── FhirServerError               a FHIR server answered with an error (carries the OperationOutcome)
        ├── FhirConnectionError       the server could not be reached (after retries)
        ├── FhirAuthError             401 / 403
        ├── FhirNotFoundError         404 / 410
        ├── FhirConflictError         409 / 412 (a concurrent update won)
        ├── FhirUnprocessableError    400 / 422 (the server refused the content)
        └── FhirProtocolError         an answer that breaks the protocol: a redirect on an API call, an answer
                                      too large or too slow, a transaction-response that does not confirm the
                                      write (nothing is reported written)
    OutputError (InputError)          an output file or folder cannot be written safely

Server text is never trusted: every FhirServerError message is passed through :func:`scrub` (tokens,
Authorization headers, user:password in URLs removed; control characters escaped).

Each carries a message a person can act on: which file, resource and field, and what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "MilanFhirError",
    "MappingError",
    "InputError",
    "ResourceError",
    "RuleSetError",
    "ConfigurationError",
    "FhirServerError",
    "FhirConnectionError",
    "FhirAuthError",
    "FhirNotFoundError",
    "FhirConflictError",
    "FhirUnprocessableError",
    "FhirProtocolError",
    "OutputError",
    "scrub",
    "register_secret",
    "printable",
]


class MilanFhirError(Exception):
    """Base class of every error milan-fhir raises on purpose."""


class MappingError(MilanFhirError):
    """A mapping or rule-set file cannot be read or does not follow its schema."""

    def __init__(self, message: str, *, file: str | None = None, entry: str | None = None) -> None:
        self.file = file
        self.entry = entry
        where = ", ".join(p for p in (file, f"entry {entry}" if entry else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class InputError(MilanFhirError):
    """Input that cannot be read: a missing file, invalid JSON, something that is not FHIR."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        resource: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.resource = resource
        self.field = field
        self.reason = message
        parts = []
        if file:
            parts.append(f"{file}:{line}" if line else file)
        if resource:
            parts.append(resource)
        if field:
            parts.append(f"field {field}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class ResourceError(InputError):
    """One resource is invalid; it is reported and skipped, never fatal."""


class RuleSetError(MilanFhirError):
    """An unknown rule set was asked for."""


class ConfigurationError(MilanFhirError):
    """A setting holds a value that cannot be used (``MILAN_FHIR_RETRIES=three``): named, never ignored."""


class FhirServerError(MilanFhirError):
    """A FHIR server answered with an error. `operation_outcome` holds its OperationOutcome, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        operation_outcome: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.url = scrub(url) if url else url
        self.operation_outcome = operation_outcome
        self.diagnostics = [scrub(d)[:500] for d in _diagnostics(operation_outcome)]
        text = scrub(message)
        if status is not None:
            text = f"HTTP {status}: {text}"
        if self.diagnostics:
            text = f"{text} ({'; '.join(self.diagnostics)})"
        super().__init__(text)


class FhirConnectionError(FhirServerError):
    """The server could not be reached, even after retries."""


class FhirAuthError(FhirServerError):
    """The server refused the credentials (401) or the access (403)."""


class FhirNotFoundError(FhirServerError):
    """The resource does not exist (404) or was deleted (410)."""


class FhirConflictError(FhirServerError):
    """A concurrent update won (409 or 412 on a version-aware update)."""


class FhirUnprocessableError(FhirServerError):
    """The server refused the content (400 or 422)."""


class FhirProtocolError(FhirServerError):
    """The server's answer breaks the protocol: a redirect on an API call, an answer over the byte cap or the
    deadline, or a transaction-response that does not confirm what was sent (then nothing is reported written)."""


class OutputError(InputError):
    """An output file or folder cannot be written safely (a symlink, a name collision, a full disk)."""


# ---------------------------------------------------------------------------------------------- scrubbing

#: values never to show (bearer tokens, passwords): registered by the HTTP client as it learns them
_SECRETS: set[str] = set()

_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+")
_AUTH_HEADER = re.compile(r"(?i)((?:proxy-)?authorization|cookie|set-cookie|x-api-key)(['\"]?\s*[:=]\s*['\"]?)[^,'\"}\n]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def register_secret(value: str | None) -> None:
    """Never show ``value`` in an error message (tokens, passwords)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes, carriage returns, bidi overrides) shown
    as ``\\xNN`` / ``\\uNNNN``; newlines and tabs kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)


def scrub(text: str) -> str:
    """``text`` without secrets: registered tokens, ``Bearer``/``Basic`` credentials, Authorization and cookie
    headers, ``user:password@`` in URLs; and :func:`printable`."""
    text = str(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1\2***", text)
    text = _AUTH_HEADER.sub(r"\1\2***", text)
    text = _USERINFO.sub(r"\1***@", text)
    return printable(text)


def _diagnostics(outcome: dict[str, Any] | None) -> list[str]:
    if not isinstance(outcome, dict):
        return []
    out = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                out.append(f"{issue.get('severity', 'error')}: {text}")
    return out
