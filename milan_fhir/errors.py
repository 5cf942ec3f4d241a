"""Every exception milan-fhir raises on purpose, in one place.

    MilanFhirError                    base class: catch this to catch them all
    ├── MappingError                  a mapping / rule-set file is unreadable or off its schema
    ├── InputError                    input (file, Bundle, NDJSON line, resource) cannot be read
    │   └── ResourceError             one resource is invalid (it is reported and skipped, never fatal)
    ├── RuleSetError                  an unknown rule set was asked for
    └── FhirServerError               a FHIR server answered with an error (carries the OperationOutcome)
        ├── FhirConnectionError       the server could not be reached (after retries)
        ├── FhirAuthError             401 / 403
        ├── FhirNotFoundError         404 / 410
        ├── FhirConflictError         409 / 412 (a concurrent update won)
        └── FhirUnprocessableError    400 / 422 (the server refused the content)

Each carries a message a person can act on: which file, resource and field, and what is wrong.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MilanFhirError",
    "MappingError",
    "InputError",
    "ResourceError",
    "RuleSetError",
    "FhirServerError",
    "FhirConnectionError",
    "FhirAuthError",
    "FhirNotFoundError",
    "FhirConflictError",
    "FhirUnprocessableError",
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
        self.url = url
        self.operation_outcome = operation_outcome
        self.diagnostics = _diagnostics(operation_outcome)
        text = message
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
