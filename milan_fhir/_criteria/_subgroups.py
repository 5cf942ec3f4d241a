"""Literature subgroups the data shows (criteria.md §5): decided here, beside the criteria; writers only shape them.

Pure functions over the facts of :mod:`milan_fhir._domain`; no FHIR, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from .._domain import CriterionResult, Ki67Fact, PatientRecord, Source, Status

__all__ = ["subgroups", "liver_metastasis"]


def _counts(date: dt.date | None, as_of: dt.date, *, needs_date: bool) -> bool:
    if date is None:
        return not needs_date
    return date <= as_of


def liver_metastasis(record: PatientRecord | None, as_of: dt.date) -> Source | None:
    """The liver metastasis a result names as its condition (the RiskAssessment's ``condition``, criteria.md §5):
    of the liver metastases recorded on or before ``as_of`` (an undated one counts), an active one before an
    inactive one, then the most recent; None without any."""
    if record is None:
        return None
    livers = [m for m in record.metastases
              if m.location == "liver" and _counts(m.source.date, as_of, needs_date=False)]
    if not livers:
        return None
    livers.sort(key=lambda m: (m.active, m.source.date or dt.date.min), reverse=True)
    return livers[0].source


def _latest(facts: Iterable[Any], as_of: dt.date) -> Any | None:
    dated = [f for f in facts if f.source.date is not None and f.source.date <= as_of]
    return max(dated, key=lambda f: f.source.date) if dated else None


def _src_text(src: Source) -> str:
    bits = [src.reference]
    if src.date:
        bits.append(src.date.isoformat())
    return ", ".join(bits)


def _ki67_below(f: Ki67Fact, limit: float) -> bool:
    """The Ki-67 value is certainly below ``limit``."""
    if f.comparator in (None, "<="):
        return f.percent < limit
    if f.comparator == "<":
        return f.percent <= limit
    return False  # ">", ">=": a lower bound never shows "below"


#: grade evidence that states the grade explicitly (a grade finding, a "G1" diagnosis code); a morphology code
#: never establishes G1 (criteria.md §5 v2: ICD-O-3 8240/3 is "NET, NOS" and gives no grade)
_EXPLICIT_GRADE_KINDS = ("grade", "diagnosis")
#: unusable values of these concepts leave the grade unsettled
_GRADE_CONCEPTS = ("ki67", "histologic_grade", "grade", "morphology")


def subgroups(
    record: PatientRecord | None, as_of: dt.date, results: Mapping[str, CriterionResult] | None = None
) -> dict[str, str]:
    """The literature subgroups the data shows, each with the evidence that shows it (a phrase citing sources).

    grade_1: G1 established (criteria.md §5 v2): an explicit G1 (a grade finding or a G1 diagnosis code, never a
    morphology) or every Ki-67 below 3 %, with nothing of a higher grade, no unusable Ki-67 or grade value, and
    nothing of it read but not counted (about another tumour); with ``results``, also ``low_grade`` met and its
    evidence citing the G1 source. minor_liver_resection: a completed minor liver resection;
    liver_metastases_1_to_2: the latest count of liver metastases is 1 or 2; largest_metastasis_below_3cm: the
    latest size of the largest liver metastasis is < 30 mm.
    """
    out: dict[str, str] = {}
    if record is None:
        return out
    not_counted = {i.reference for i in record.ignored}
    grades = [
        g for g in record.grades
        if _counts(g.source.date, as_of, needs_date=False) and g.source.reference not in not_counted
    ]
    ki67 = [
        k for k in record.ki67
        if _counts(k.source.date, as_of, needs_date=False) and k.source.reference not in not_counted
    ]
    g1 = [g for g in grades if g.grade == 1 and g.kind in _EXPLICIT_GRADE_KINDS]
    ki_low = [k for k in ki67 if _ki67_below(k, 3.0)]
    higher = any(g.grade > 1 for g in grades) or any(not _ki67_below(k, 3.0) for k in ki67)
    unsettled = any(u.concept in _GRADE_CONCEPTS for u in record.unusable)
    if (g1 or ki_low) and not higher and not unsettled:
        shown = [(g.source, g.label) for g in g1] + [
            (k.source, k.source.value or f"Ki-67 {k.percent:g} %") for k in ki_low
        ]
        low = results.get("low_grade") if results is not None else None
        if results is not None:
            cited = {e.reference for e in low.evidence} if low is not None and low.status is Status.MET else set()
            shown = [(src, what) for src, what in shown if src.reference in cited]
        if shown:
            src, what = shown[0]
            out["grade_1"] = f"{what} ({_src_text(src)})"
    minor = [
        p for p in record.procedures
        if p.kind == "liver_resection_minor" and _counts(p.source.date, as_of, needs_date=False)
    ]
    if minor:
        src = minor[0].source
        out["minor_liver_resection"] = f"{src.value or 'minor liver resection'} ({_src_text(src)})"
    count = _latest(record.liver_metastasis_counts, as_of)
    if count is not None and 1 <= count.count <= 2:
        out["liver_metastases_1_to_2"] = f"{count.count} liver metastas{'is' if count.count == 1 else 'es'} ({_src_text(count.source)})"
    size = _latest(record.largest_liver_metastasis, as_of)
    if size is not None and size.mm < 30:
        out["largest_metastasis_below_3cm"] = f"largest liver metastasis {size.mm:g} mm ({_src_text(size.source)})"
    return out


