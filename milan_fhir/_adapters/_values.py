"""Reading FHIR value shapes: codings, percentages, lengths, references, clinical dates, labels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Mapping

from .._dates import parse_clinical_date, parse_clinical_date_latest
from .._mappings import ICDO3, CodeEntry, Mappings

__all__ = [
    "codings",
    "codings_of_all",
    "Percent",
    "read_percent",
    "read_length_mm",
    "resolve_reference",
    "Resolver",
    "make_resolver",
    "number_text",
    "first_date",
    "first_date_span",
    "period_part",
    "unverified",
    "body_site_entries",
    "combine_sites",
    "texts_of",
    "MAX_VALUE_TEXT",
]

#: a value text longer than this is unusable without being pattern-matched (hostile input stays cheap)
MAX_VALUE_TEXT = 200

UCUM = "http://unitsofmeasure.org"

Resolver = Callable[[str], "str | None"]


# ---------------------------------------------------------------------------------------------- codings
def as_list(value: Any) -> list[Any]:
    """A FHIR repeating element as a list; anything that is not a list (a typo, a scalar) reads as empty."""
    return value if isinstance(value, list) else []


def codings(concept: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) of every coding of a CodeableConcept (empty for anything else)."""
    if not isinstance(concept, dict):
        return []
    out = []
    for c in as_list(concept.get("coding")):
        if isinstance(c, dict):
            system, code = c.get("system"), c.get("code")
            out.append((system if isinstance(system, str) else None, code if isinstance(code, str) else None))
    return out


def codings_of_all(concepts: Any) -> list[tuple[str | None, str | None]]:
    """Codings of a list of CodeableConcepts (bodySite is a list)."""
    if isinstance(concepts, dict):
        concepts = [concepts]
    if not isinstance(concepts, list):
        return []
    return [c for concept in concepts for c in codings(concept)]


def unverified(*entries: CodeEntry | None) -> tuple[str, ...]:
    """Labels of the entries used that the mappings flag unverified (level U), without repeats."""
    out: list[str] = []
    for e in entries:
        if e is not None and e.level == "U" and e.label not in out:
            out.append(e.label)
    return tuple(out)


# ---------------------------------------------------------------------------------------------- numbers
def number_text(x: float) -> str:
    """12.0 -> "12", 2.5 -> "2.5"."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class Percent:
    """A percentage read from a value; ``problem`` set (and ``percent`` None) when it cannot be used."""

    percent: float | None = None
    comparator: str | None = None
    words: str = ""  # "12 %", "<2 %", "12 % (fraction 0.12)"
    field: str = ""
    problem: str | None = None


_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">="}
#: (v2) criteria.md §3, exactly: an optional comparator, optional spaces, a number with ``.`` or ``,`` as decimal
#: separator, optional spaces, ``%``; surrounding spaces are stripped before matching. Linear: every part is a
#: single run of one character class, and the text is at most MAX_VALUE_TEXT characters long.
_PERCENT_TEXT = re.compile(r"(<=|>=|≤|≥|<|>)?\s*([0-9]+(?:[.,][0-9]+)?)\s*%")


def read_percent(obs: dict[str, Any]) -> Percent:
    """The percentage of an Observation value (criteria.md §3 / §3a units rule)."""
    if "valueQuantity" in obs:
        return _percent_from_quantity(obs["valueQuantity"])
    if "valueString" in obs:
        return _percent_from_string(obs["valueString"])
    present = [k for k in obs if k.startswith("value")]
    if present:
        return Percent(field=present[0], problem=f"{present[0]} is not a percentage (expected a Quantity or a string such as 8%)")
    return Percent(field="value[x]", problem="no value recorded")


def _percent_from_quantity(q: Any) -> Percent:
    field = "valueQuantity"
    if not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)) or isinstance(q.get("value"), bool):
        return Percent(field=f"{field}.value", problem="the Quantity has no numeric value")
    value = float(q["value"])
    unit = _ucum_unit(q)
    if unit is None:
        shown = q.get("code") or q.get("unit") or "none"
        return Percent(field=f"{field}.code", problem=f"unit {shown!r} is not UCUM % or 1")
    percent = value * 100 if unit == "1" else value
    comparator = _COMPARATORS.get(str(q["comparator"])) if q.get("comparator") else None
    if q.get("comparator") and comparator is None:
        return Percent(field=f"{field}.comparator", problem=f"unknown comparator {q.get('comparator')!r}")
    return _checked(percent, comparator, field, fraction=value if unit == "1" else None)


def _ucum_unit(q: dict[str, Any]) -> str | None:
    """``%`` or ``1`` when the UCUM code (or, with no code and no system, the unit) says so."""
    code, system = q.get("code"), q.get("system")
    if code is None and system is None:
        unit = q.get("unit")
        return unit.strip() if isinstance(unit, str) and unit.strip() in ("%", "1") else None
    if system not in (None, UCUM) or not isinstance(code, str):
        return None
    return code if code in ("%", "1") else None


def _percent_from_string(text: Any) -> Percent:
    field = "valueString"
    if not isinstance(text, str):
        return Percent(field=field, problem="valueString is not text")
    if len(text) > MAX_VALUE_TEXT:
        return Percent(field=field, problem=f"text of {len(text)} characters is not a percentage such as 8% or <2%")
    stripped = text.strip()
    m = _PERCENT_TEXT.fullmatch(stripped)
    if not m:
        return Percent(field=field, problem=f"text {stripped!r} is not a percentage such as 8% or <2%")
    comparator = _COMPARATORS[m.group(1)] if m.group(1) else None
    return _checked(float(m.group(2).replace(",", ".")), comparator, field)


def _checked(percent: float, comparator: str | None, field: str, fraction: float | None = None) -> Percent:
    if not 0 <= percent <= 100:
        return Percent(field=field, problem=f"{number_text(percent)} % is outside 0-100 %")
    words = f"{comparator or ''}{number_text(percent)} %"
    if fraction is not None:
        words += f" (fraction {number_text(fraction)})"
    return Percent(percent, comparator, words, field)


_LENGTH_FACTORS = {"mm": 1.0, "cm": 10.0}


def read_length_mm(obs: dict[str, Any]) -> tuple[float | None, str, str | None]:
    """(millimetres, field, problem) of a length Quantity in mm or cm."""
    q = obs.get("valueQuantity")
    field = "valueQuantity"
    if not isinstance(q, dict):
        return None, "value[x]", "no length Quantity recorded"
    value = q.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return None, f"{field}.value", "the Quantity has no positive numeric value"
    code, system = q.get("code"), q.get("system")
    unit = code if (code is not None or system is not None) else q.get("unit")
    if system not in (None, UCUM) or unit not in _LENGTH_FACTORS:
        return None, f"{field}.code", f"unit {unit!r} is not UCUM mm or cm"
    return float(value) * _LENGTH_FACTORS[unit], field, None


# ---------------------------------------------------------------------------------------------- references
def resolve_reference(ref: Any, resolve: Resolver | Mapping[str, str] | None = None) -> str | None:
    """``Type/id`` of a Reference (dict) or reference string: relative, absolute URL, ``_history``, urn:uuid."""
    text = ref.get("reference") if isinstance(ref, dict) else ref
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    if resolve is not None:
        hit = resolve.get(text) if isinstance(resolve, Mapping) else resolve(text)
        if hit:
            return hit
    if text.startswith(("urn:uuid:", "urn:oid:", "#")):
        return None
    parts = [p for p in text.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return f"{parts[-2]}/{parts[-1]}"
    return None


def make_resolver(full_urls: Mapping[str, str]) -> Resolver:
    """A resolver for references written as Bundle ``fullUrl`` (``urn:uuid:...`` or absolute URLs)."""
    return lambda text: full_urls.get(text)


# ---------------------------------------------------------------------------------------------- dates
def first_date(*values: Any) -> date | None:
    """The first value that is a FHIR date/dateTime, as a UTC date."""
    for v in values:
        d = parse_clinical_date(v)
        if d is not None:
            return d
    return None


def first_date_span(*values: Any) -> tuple[date | None, date | None]:
    """(earliest, latest) possible UTC day of the first value that is a FHIR date/dateTime (``2025-06`` ->
    2025-06-01, 2025-06-30); (None, None) when none is."""
    for v in values:
        d = parse_clinical_date(v)
        if d is not None:
            return d, parse_clinical_date_latest(v) or d
    return None, None


def period_part(period: Any, part: str) -> Any:
    return period.get(part) if isinstance(period, dict) else None


# ---------------------------------------------------------------------------------------------- sites
def body_site_entries(mappings: Mappings, concepts: Any) -> tuple[list[CodeEntry], int]:
    """Mapped entries of a bodySite list (SNOMED body structures, or ICD-O-3 topography read with the ICD-10
    site table, criteria.md §1 v2), and how many codings were not mapped."""
    found: list[CodeEntry] = []
    unmapped = 0
    for system, code in codings_of_all(concepts):
        hit = mappings.match("body_sites", system, code)
        if hit is None and system and code and mappings.canonical_system(system) == ICDO3:
            hit = mappings.match("primary_net_by_morphology", "http://hl7.org/fhir/sid/icd-10-cm", code) or \
                mappings.match("topography_sites", ICDO3, code)
        if hit is not None and hit.site:
            found.append(hit)
        elif code:
            unmapped += 1
    return found, unmapped


def combine_sites(mappings: Mappings, keys: list[str]) -> tuple[str | None, bool]:
    """The most specific of site keys that lie on one branch of the site tree, and whether they conflict.

    ``(None, False)`` for no keys; ``(None, True)`` when two keys do not contain one another."""
    distinct = list(dict.fromkeys(k for k in keys if k))
    if not distinct:
        return None, False
    paths = sorted((mappings.site_path(k) or (k,) for k in distinct), key=len, reverse=True)
    deepest = paths[0]
    for p in paths[1:]:
        if p[0] not in deepest:
            return None, True
    return deepest[0], False


def texts_of(concept: Any, limit: int = 4096) -> list[str]:
    """``text`` and every coding's ``display`` of a CodeableConcept, each cut to ``limit`` characters."""
    if not isinstance(concept, dict):
        return []
    out = []
    t = concept.get("text")
    if isinstance(t, str):
        out.append(t[:limit])
    for c in as_list(concept.get("coding")):
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            out.append(c["display"][:limit])
    return out
