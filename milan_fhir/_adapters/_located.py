"""Where a resource came from, what was wrong with it, and how Bundles are unwrapped.

These small types live here (not in ``_sources``) so that the adapters need nothing from the source step;
``milan_fhir._sources`` re-exports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import InputError

__all__ = ["Located", "InputProblem", "resource_key", "iter_bundle_or_resource"]

#: Deepest nesting of Bundles in Bundles that is unwrapped (a deeper one is reported).
MAX_BUNDLE_DEPTH = 8


@dataclass(slots=True)
class Located:
    """One resource and where it was read: file, line (the file's line where the resource or its Bundle entry
    starts; an item index for in-memory input), Bundle fullUrl, and ``scope``: resources of one scope resolve
    each other's ``fullUrl`` (one Bundle; None: the whole file, as before scopes existed)."""

    resource: dict[str, Any]
    file: str | None = None
    line: int | None = None
    full_url: str | None = None
    scope: Any = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(text: str) -> str:
    """Control characters escaped: a hostile id or file name can never split or forge a line of output."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass
class InputProblem:
    """One file, line or resource that could not be used; it was skipped, the rest went on."""

    file: str | None
    line: int | None
    resource: str | None  # "Type/id" when known
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(_clean(f"{self.file}:{self.line}" if self.line is not None else self.file))
        elif self.line is not None:
            where.append(f"item {self.line}")
        if self.resource:
            where.append(_clean(self.resource))
        if self.field:
            where.append(f"field {_clean(self.field)}")
        text = " ".join(_clean(self.reason).split())
        return f"{', '.join(where)}: {text}" if where else text

    @classmethod
    def from_error(cls, exc: InputError) -> "InputProblem":
        return cls(exc.file, exc.line, exc.resource, exc.field, exc.reason)


def resource_key(resource: dict[str, Any], full_url: str | None = None) -> str | None:
    """``Type/id`` of a resource; a resource without id takes it from a ``urn:uuid:`` or absolute fullUrl."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return None
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return f"{rtype}/{rid}"
    if isinstance(full_url, str):
        if full_url.startswith("urn:uuid:") and len(full_url) > 9:
            return f"{rtype}/{full_url[9:]}"
        parts = full_url.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
            return f"{rtype}/{parts[-1]}"
    return None


def iter_bundle_or_resource(
    obj: Any, problems: list[InputProblem], file: str | None = None, line: int | None = None,
    entry_lines: list[int] | None = None, scope: Any = None,
) -> Iterator[Located]:
    """The resources of a Bundle (and of Bundles nested in it, iteratively), or the resource itself.

    ``line`` is where ``obj`` starts; ``entry_lines`` (when known) the line where each top-level entry starts.
    Entries of one Bundle share its ``scope`` (``scope`` when given, else a new one).
    """
    if not isinstance(obj, dict):
        problems.append(InputProblem(file, line, None, None, f"not FHIR: expected a JSON object, found {_kind(obj)}"))
        return
    rtype = obj.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        problems.append(InputProblem(file, line, None, "resourceType", "not FHIR: a JSON object without resourceType"))
        return
    if rtype != "Bundle":
        yield Located(obj, file, line, None, scope)
        return
    scope = scope if scope is not None else object()
    # (bundle, lines of its entries or None, line of the bundle, field prefix, nesting depth): no recursion
    stack: list[tuple[dict[str, Any], list[int] | None, int | None, str, int]] = [(obj, entry_lines, line, "", 1)]
    while stack:
        bundle, lines, where0, prefix, depth = stack.pop()
        entries = bundle.get("entry")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            problems.append(InputProblem(file, where0, _bundle_name(bundle), f"{prefix}entry", "Bundle.entry is not a list"))
            continue
        if lines is not None and len(lines) != len(entries):
            lines = None
        nested: list[tuple[dict[str, Any], list[int] | None, int | None, str, int]] = []
        for i, entry in enumerate(entries):
            where = lines[i] if lines is not None else where0
            field = f"{prefix}entry[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                problems.append(InputProblem(file, where, _bundle_name(bundle), field, "Bundle entry has no resource"))
                continue
            res = entry["resource"]
            full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            rt = res.get("resourceType")
            if rt == "Bundle":
                if depth >= MAX_BUNDLE_DEPTH:
                    problems.append(InputProblem(file, where, _bundle_name(res), field,
                                                 f"Bundles nested deeper than {MAX_BUNDLE_DEPTH} levels are not read"))
                else:
                    nested.append((res, None, where, f"{field}.resource.", depth + 1))
                continue
            if not isinstance(rt, str) or not rt:
                problems.append(InputProblem(file, where, None, f"{field}.resource.resourceType", "no resourceType"))
                continue
            yield Located(res, file, where, full_url, scope)
        stack.extend(reversed(nested))  # nested Bundles in entry order, after the outer entries


def _bundle_name(obj: dict[str, Any]) -> str:
    return f"Bundle/{_clean(obj['id'])}" if isinstance(obj.get("id"), str) else "Bundle"


def _kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "a JSON array"
    if obj is None:
        return "null"
    return f"a JSON {type(obj).__name__}"
