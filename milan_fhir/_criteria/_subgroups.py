"""Literature subgroups the data shows (criteria.md §5): decided here, beside the criteria; writers only shape them.

Pure functions over the facts of :mod:`milan_fhir._domain`; no FHIR, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from .._domain import Ki67Fact, PatientRecord, Source

__all__ = ["subgroups"]


def _counts(date: dt.date | None, as_of: dt.date, *, needs_date: bool) -> bool:
    if date is None:
        return not needs_date
    return date <= as_of


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


def subgroups(record: PatientRecord | None, as_of: dt.date) -> dict[str, str]:
    """The literature subgroups the data shows, each with the evidence that shows it (a phrase citing sources).

    grade_1: G1 evidence (a grade finding 1, or Ki-67 below 3 %) and nothing of a higher grade;
    minor_liver_resection: a completed minor liver resection; liver_metastases_1_to_2: the latest count of liver
    metastases is 1 or 2; largest_metastasis_below_3cm: the latest size of the largest liver metastasis is < 30 mm.
    """
    out: dict[str, str] = {}
    if record is None:
        return out
    grades = [g for g in record.grades if _counts(g.source.date, as_of, needs_date=False)]
    ki67 = [k for k in record.ki67 if _counts(k.source.date, as_of, needs_date=False)]
    g1 = [g for g in grades if g.grade == 1]
    ki_low = [k for k in ki67 if _ki67_below(k, 3.0)]
    higher = any(g.grade > 1 for g in grades) or any(not _ki67_below(k, 3.0) for k in ki67)
    if (g1 or ki_low) and not higher:
        src = (g1[0].source if g1 else ki_low[0].source)
        what = g1[0].label if g1 else (src.value or f"Ki-67 {ki_low[0].percent:g} %")
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


