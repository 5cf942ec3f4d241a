"""Helpers shared by the criteria: date filtering, citing sources, bounds, building results.

Pure functions over the facts of :mod:`milan_fhir._domain`; no FHIR, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date

from .._dates import minus_months
from .._domain import Comparator, CriterionResult, PatientRecord, Source, Status, Unusable

__all__ = [
    "counts_existence",
    "counts_recency",
    "months_back",
    "cite",
    "fmt_pct",
    "fmt_value",
    "decides_high",
    "unusable_of",
    "valid_percent",
    "unusable_clause",
    "undated_clause",
    "result",
]


def counts_existence(source: Source, as_of: date) -> bool:
    """Where only existence matters: on or before ``as_of``, or undated (criteria.md §3a)."""
    return source.date is None or source.date <= as_of


def counts_recency(source: Source, as_of: date) -> bool:
    """Where recency matters: dated, and on or before ``as_of`` (undated facts are ignored)."""
    return source.date is not None and source.date <= as_of


def months_back(d: date, months: int) -> date:
    """``d`` minus ``months`` calendar months (clamped); ``date.min`` if that falls before year 1."""
    try:
        return minus_months(d, months)
    except (ValueError, OverflowError):
        return date.min


def cite(source: Source) -> str:
    """``Observation/k1, 2025-03-01`` (or ``…, undated``)."""
    when = source.date.isoformat() if source.date else "undated"
    return f"{source.reference}, {when}"


def fmt_pct(value: float) -> str:
    """12.0 -> ``12``; 9.95 -> ``9.95``."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"


def fmt_value(percent: float, comparator: Comparator | None) -> str:
    """``12 %`` or ``<2 %``."""
    return f"{comparator or ''}{fmt_pct(percent)} %"


def decides_high(value: float, comparator: Comparator | None, threshold: float, inclusive: bool) -> bool | None:
    """Whether a value (or a bound) is "high": ``>= threshold`` when ``inclusive``, else ``> threshold``.

    True / False when every value the bound allows gives the same answer; None when the bound does not decide
    (``<12 %`` against a 10 % limit). NaN never decides.
    """
    if math.isnan(value) or math.isnan(threshold):
        return None
    if comparator is None:
        return value >= threshold if inclusive else value > threshold
    if comparator == "<":  # values in (-inf, value)
        return False if value <= threshold else None
    if comparator == "<=":  # values in (-inf, value]
        if (value < threshold) if inclusive else (value <= threshold):
            return False
        return None
    if comparator == ">":  # values in (value, inf)
        return True if value >= threshold else None
    if comparator == ">=":  # values in [value, inf)
        if (value >= threshold) if inclusive else (value > threshold):
            return True
        return None
    return None  # pragma: no cover - Comparator is a closed Literal


def valid_percent(value: float) -> bool:
    """A percentage the criteria can use: a number (not NaN) that is not negative."""
    return not math.isnan(value) and value >= 0


def unusable_of(record: PatientRecord, concepts: Iterable[str]) -> list[Unusable]:
    wanted = set(concepts)
    return [u for u in record.unusable if u.concept in wanted]


def unusable_clause(items: Sequence[Unusable]) -> str:
    """``values that could not be used: Observation/x (valueString: text without %)`` or ``""``."""
    if not items:
        return ""
    parts = ", ".join(f"{u.reference} ({u.field}: {u.reason})" for u in items)
    return f"values that could not be used: {parts}"


def undated_clause(sources: Sequence[Source], what: str) -> str:
    """``undated disease-status assessments not used: Observation/x`` or ``""``."""
    if not sources:
        return ""
    refs = ", ".join(s.reference for s in sources)
    return f"undated {what} not used: {refs}"


def _unverified_clause(evidence: Sequence[Source]) -> str:
    notes = []
    seen: set[tuple[str, str]] = set()
    for s in evidence:
        for code in s.unverified_codes:
            if (s.reference, code) not in seen:
                seen.add((s.reference, code))
                notes.append(f"code {code} of {s.reference}")
    if not notes:
        return ""
    verb = "is" if len(notes) == 1 else "are"
    return f" ({', '.join(notes)} {verb} unverified)"


def _dedupe(sources: Iterable[Source]) -> tuple[Source, ...]:
    out: list[Source] = []
    seen: set[Source] = set()
    for s in sources:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return tuple(out)


def result(
    name: str,
    status: Status,
    reason: str,
    evidence: Iterable[Source] = (),
    missing: Iterable[str] = (),
    *,
    notes: Iterable[str] = (),
) -> CriterionResult:
    """Build a result: flags unverified codes of the evidence in the reason, appends ``notes`` as clauses.

    ``met`` without evidence is a bug: it is turned into ``indeterminate`` rather than reported as met.
    """
    ev = _dedupe(evidence)
    text = reason.rstrip()
    if text.endswith("."):
        text = text[:-1]
    clauses = [n for n in notes if n]
    text = f"{text}{_unverified_clause(ev)}" + "".join(f"; {c}" for c in clauses) + "."
    miss = tuple(dict.fromkeys(missing))
    if status is Status.MET and not ev:  # defensive: never met without evidence
        return CriterionResult(
            name=name,
            status=Status.INDETERMINATE,
            reason=f"{text} No evidence supports this, so it is not counted as met.",
            missing=miss or ("evidence for this criterion",),
        )
    if status is not Status.INDETERMINATE:
        miss = ()
    return CriterionResult(name=name, status=status, reason=text, evidence=ev, missing=miss)
