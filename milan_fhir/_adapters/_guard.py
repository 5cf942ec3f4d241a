"""Generic checks on a raw resource before anything reads it closely: one place, called by ``adapt_resource``.

Each check is linear in the size of the resource and needs no recursion, so a hostile input cannot make the
adapters crash (``RecursionError``, ``OverflowError``), hang, or slip a value of the wrong JSON type past the
date rules. A failed check is a ``(field, reason)`` pair, reported like an R4B validation fault: the resource
is skipped and named in the problems, never used.

- **depth**: a resource nested deeper than :data:`MAX_DEPTH` JSON levels (real FHIR stays below ~15) is refused
  before R4B validation, which would recurse through it;
- **identity**: ``id``, ``subject.reference`` and the Bundle ``fullUrl`` become patient keys, file names and
  output lines; a control character (tab, newline, escape...) in one is refused, so it can never split or forge a
  line of output, nor name a file;
- **clinical time**: ``effective[x]``, ``onset[x]``, ``abatement[x]``, ``performed[x]``, ``recordedDate``,
  ``issued``, ``deceased[x]`` must have their JSON type (a string, a Period object with string ``start``/``end``,
  a boolean) and a date that can be read, also after conversion to UTC (``0001-01-01T00:00:00+01:00`` cannot).
"""

from __future__ import annotations

import re
from typing import Any

from .._dates import parse_clinical_date

__all__ = ["MAX_DEPTH", "guard_fault", "key_fault", "has_control_chars", "printable"]

#: Deepest JSON nesting accepted in one resource (the resource object itself is level 1).
MAX_DEPTH = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

#: (field, expected JSON shape) of the clinical-time fields of each resource type the rules read.
_TIME_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Observation": (("effectiveDateTime", "date"), ("effectiveInstant", "date"), ("effectivePeriod", "period"),
                    ("issued", "date")),
    "Condition": (("onsetDateTime", "date"), ("onsetPeriod", "period"), ("recordedDate", "date"),
                  ("abatementDateTime", "date"), ("abatementPeriod", "period")),
    "Procedure": (("performedDateTime", "date"), ("performedPeriod", "period")),
    "Patient": (("deceasedDateTime", "date"), ("deceasedBoolean", "boolean")),
}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def has_control_chars(text: str) -> bool:
    return _CONTROL.search(text) is not None


def printable(text: str, limit: int = 80) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters, for messages."""
    out = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text[: limit + 1])
    return out if len(text) <= limit else out[:limit] + "..."


def key_fault(key: str | None, field: str) -> tuple[str, str] | None:
    if isinstance(key, str) and has_control_chars(key):
        return field, f"contains a control character ('{printable(key)}'); it cannot name a patient or resource"
    return None


def guard_fault(resource: dict[str, Any], full_url: str | None = None, *, shallow: bool = False) -> tuple[str, str] | None:
    """``(field, reason)`` of the first generic fault of a resource the rules would read, or None.

    ``shallow``: the caller knows the resource cannot nest deeper than MAX_DEPTH (:func:`shallow_text`), so
    the depth walk is skipped."""
    fault = None if shallow else _depth_fault(resource)
    if fault:
        return fault
    subject = resource.get("subject")
    for value, field in ((resource.get("id"), "id"), (full_url, "fullUrl"),
                         (subject.get("reference") if isinstance(subject, dict) else None, "subject.reference")):
        fault = key_fault(value, field)
        if fault:
            return fault
    for field, shape in _TIME_FIELDS.get(resource.get("resourceType"), ()):  # type: ignore[arg-type]
        if field in resource:
            fault = _time_fault(resource[field], field, shape)
            if fault:
                return fault
    return None


def shallow_text(text: bytes) -> bool:
    """Whether JSON ``text`` cannot nest deeper than MAX_DEPTH: every level opens with a ``{`` or ``[``, so at
    most MAX_DEPTH of them (in strings too: a sound bound) means at most MAX_DEPTH levels."""
    return text.count(b"{") + text.count(b"[") <= MAX_DEPTH


# ---------------------------------------------------------------------------------------------- internals
def _depth_fault(resource: Any) -> tuple[str, str] | None:
    """Iterative walk: the first path deeper than MAX_DEPTH, without recursion. A first walk counts levels only
    (every resource the rules read takes it); the path of a fault is built by a second one."""
    if not _too_deep(resource):
        return None
    stack: list[tuple[Any, int, str]] = [(resource, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            return _short(path), f"nested deeper than {MAX_DEPTH} levels; no FHIR resource is"
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1, f"{path}.{k}" if path else str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1, f"{path}[{i}]"))
    return None


def _too_deep(resource: Any) -> bool:
    """Whether some value of ``resource`` is nested deeper than MAX_DEPTH (a walk that counts levels only)."""
    stack: list[tuple[Any, int]] = [(resource, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            return True
        for v in (node.values() if isinstance(node, dict) else node):
            if isinstance(v, (dict, list)):
                push((v, depth + 1))
    return False


def _short(path: str) -> str:
    parts = re.split(r"(?=[.\[])", path)
    return path if len(parts) <= 6 else "".join(parts[:4]) + f"...({len(parts)} levels)"


def _time_fault(value: Any, field: str, shape: str) -> tuple[str, str] | None:
    if value is None:
        return None  # a JSON null is an absent element: the resource is undated (criteria.md §1d), not rejected
    if shape == "boolean":
        return None if isinstance(value, bool) else (field, f"must be a boolean, found {_kind(value)}")
    if shape == "date":
        return _date_fault(value, field)
    if not isinstance(value, dict):
        return field, f"must be a Period object, found {_kind(value)}"
    for part in ("start", "end"):
        if part in value:
            fault = _date_fault(value[part], f"{field}.{part}")
            if fault:
                return fault
    return None


def _date_fault(value: Any, field: str) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return field, f"must be a date or dateTime string, found {_kind(value)}"
    if parse_clinical_date(value) is None:
        return field, (f"'{printable(value)}' is not a usable date (not a FHIR date/dateTime, or outside years "
                       "1-9999 once converted to UTC)")
    return None


def _kind(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(repr(value)) <= 40:
        return f"{kind} ({value!r})"
    return kind
