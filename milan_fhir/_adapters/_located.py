"""Where a resource came from, what was wrong with it, and how Bundles are unwrapped.

These small types live here (not in ``_sources``) so that the adapters need nothing from the source step;
``milan_fhir._sources`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import InputError

__all__ = ["Located", "InputProblem", "resource_key", "iter_bundle_or_resource"]

_LINE_FILES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")


@dataclass(slots=True)
class Located:
    """One resource and where it was read: file, line (NDJSON line number or Bundle entry index), fullUrl."""

    resource: dict[str, Any]
    file: str | None = None
    line: int | None = None
    full_url: str | None = None


@dataclass
class InputProblem:
    """One resource or line that could not be used; it was skipped, the rest went on."""

    file: str | None
    line: int | None
    resource: str | None  # "Type/id" when known
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.file and self.line is not None and not self.file.lower().endswith(_LINE_FILES):
            where.append(f"{self.file} entry {self.line}")  # a Bundle entry index, not a line
        elif self.file:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        elif self.line is not None:
            where.append(f"item {self.line}")
        if self.resource:
            where.append(self.resource)
        if self.field:
            where.append(f"field {self.field}")
        text = " ".join(self.reason.split())
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
    obj: Any, problems: list[InputProblem], file: str | None = None, line: int | None = None
) -> Iterator[Located]:
    """The resources of a Bundle (recursively for nested Bundles), or the resource itself."""
    if not isinstance(obj, dict):
        problems.append(InputProblem(file, line, None, None, f"expected a JSON object, found {_kind(obj)}"))
        return
    rtype = obj.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        problems.append(InputProblem(file, line, None, "resourceType", "not a FHIR resource (no resourceType)"))
        return
    if rtype != "Bundle":
        yield Located(obj, file, line, None)
        return
    entries = obj.get("entry") or []
    if not isinstance(entries, list):
        problems.append(InputProblem(file, line, _bundle_name(obj), "entry", "Bundle.entry is not a list"))
        return
    for i, entry in enumerate(entries):
        where = line if line is not None else i
        field = f"entry[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            problems.append(InputProblem(file, where, _bundle_name(obj), field, "Bundle entry has no resource"))
            continue
        res = entry["resource"]
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if res.get("resourceType") == "Bundle":
            yield from iter_bundle_or_resource(res, problems, file, where)
            continue
        if not isinstance(res.get("resourceType"), str):
            problems.append(InputProblem(file, where, None, f"{field}.resource.resourceType", "no resourceType"))
            continue
        yield Located(res, file, where, full_url)


def _bundle_name(obj: dict[str, Any]) -> str:
    return f"Bundle/{obj['id']}" if isinstance(obj.get("id"), str) else "Bundle"


def _kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "a JSON array"
    if obj is None:
        return "null"
    return f"a JSON {type(obj).__name__}"
