"""``liver_burden`` — metastatic diffusion below [liver_burden_limit_percent] % of the liver volume.

The most recent dated measurement on or before ``as_of`` decides (criteria.md §3, §3a, §4, §1b, §1d). With
``liver_burden_inclusive`` the limit itself meets (milan-2007: at most 50 %), else it does not (milan-net).
(v2) Staleness is decided first: the latest measurement must lie within [burden_window_months] before ``as_of``
(inclusive). An unusable measurement newer than the latest usable one makes the result indeterminate; one on the
latest day caps it (a high value that day still decides); an undated measurement at or above the limit caps.
"""

from __future__ import annotations

from datetime import date

from .._domain import CriterionResult, LiverBurdenFact, PatientRecord, RuleSet, Status
from ._common import (
    cite,
    counts_existence,
    counts_recency,
    decides_high,
    fmt_pct,
    fmt_value,
    months_back,
    result,
    undated_clause,
    unusable_clause,
    valid_percent,
)

NAME = "liver_burden"
_MISSING = (
    "a measurement of the percentage of liver volume involved by metastases "
    "(milan-net liver-tumor-burden Observation, % or fraction)"
)


def _cite(f: LiverBurdenFact) -> str:
    return f"{fmt_value(f.percent, f.comparator)} ({cite(f.source)})"


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    limit = rules.liver_burden_limit_percent
    window = rules.burden_window_months
    window_start = months_back(as_of, window)
    # High means "does not meet": at or above the limit (strict rule), or above it (inclusive rule).
    high_inclusive = not rules.liver_burden_inclusive
    dated = [f for f in record.liver_burden if counts_recency(f.source, as_of) and valid_percent(f.percent)]
    undated = [f for f in record.liver_burden if f.source.date is None and valid_percent(f.percent)]
    undated_high = [f for f in undated if decides_high(f.percent, f.comparator, limit, high_inclusive) is not False]
    bad = [u for u in record.unusable if u.concept == "liver_burden" and (u.date is None or u.date <= as_of)]
    not_numbers = [f.source.reference for f in record.liver_burden
                   if counts_existence(f.source, as_of) and not valid_percent(f.percent)]
    notes = [undated_clause([f.source for f in undated if f not in undated_high], "measurements")]
    comparison = (
        f"{'at most' if rules.liver_burden_inclusive else 'below'} the {fmt_pct(limit)} % limit of {rules.name}"
    )
    latest_date = max((f.source.date for f in dated), default=None)  # type: ignore[type-var]
    newest_bad = max((u.date for u in bad if u.date is not None), default=None)
    if latest_date is None and newest_bad is None:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"No dated measurement of the liver tumour burden on or before {as_of} is recorded",
            missing=(_MISSING,),
            notes=notes + [unusable_clause(bad)] + (
                ["values that are not valid percentages not used: " + ", ".join(not_numbers)] if not_numbers else []),
        )
    # 1. staleness first (criteria.md §3 v2)
    latest_any = max(d for d in (latest_date, newest_bad) if d is not None)
    if latest_any < window_start:
        latest = [f for f in dated if f.source.date == latest_any]
        shown = ", ".join(_cite(f) for f in latest) or "an unreadable value"
        return result(
            NAME,
            Status.INDETERMINATE,
            f"The latest liver tumour burden, {shown}, is older than {window} months before {as_of}",
            evidence=[f.source for f in latest],
            missing=(f"{_MISSING}, dated on or after {window_start}",),
            notes=notes,
        )
    # 2. a newer unusable value: the latest cannot be read
    if latest_date is None or (newest_bad is not None and newest_bad > latest_date):
        newer = [u for u in bad if u.date is not None and (latest_date is None or u.date > latest_date)]
        return result(
            NAME,
            Status.INDETERMINATE,
            "The latest liver tumour burden cannot be read: " + ", ".join(
                f"{u.reference} ({u.date}: {u.reason})" for u in newer),
            missing=(f"a readable value for {', '.join(u.reference for u in newer)}",),
            notes=notes,
        )
    latest = sorted((f for f in dated if f.source.date == latest_date), key=lambda f: f.source.reference)
    decisions = [(f, decides_high(f.percent, f.comparator, limit, high_inclusive)) for f in latest]
    high = [f for f, d in decisions if d is True]
    if high:
        top = max(high, key=lambda f: f.percent)
        above = "at or above" if high_inclusive else "above"
        return result(
            NAME,
            Status.NOT_MET,
            f"Latest liver tumour burden is {_cite(top)}, {above} the {fmt_pct(limit)} % limit of {rules.name}",
            evidence=(top.source,),
        )
    undecided = [f for f, d in decisions if d is None]
    if undecided:
        return result(
            NAME,
            Status.INDETERMINATE,
            "Latest liver tumour burden " + ", ".join(_cite(f) for f in undecided)
            + f" does not show whether it is {comparison}",
            evidence=[f.source for f in undecided],
            missing=(f"an exact value rather than a bound: {_MISSING}",),
            notes=notes,
        )
    top = max(latest, key=lambda f: f.percent)
    reason = f"Latest liver tumour burden is {_cite(top)}, {comparison}"
    caps = []
    same_day_bad = [u for u in bad if u.date == latest_date or u.date is None]
    if same_day_bad:
        caps.append("unreadable measurement " + ", ".join(f"{u.reference} ({u.reason})" for u in same_day_bad))
    if undated_high:
        caps.append("undated measurement " + ", ".join(_cite(f) for f in undated_high) + f" is not {comparison}")
    if not_numbers:
        caps.append("values that are not valid percentages: " + ", ".join(not_numbers))
    if caps:
        return result(
            NAME, Status.INDETERMINATE, f"{reason}; but not settled: " + "; ".join(caps),
            evidence=[f.source for f in latest],
            missing=[f"a readable, dated value for {u.reference}" for u in same_day_bad]
            + [f"the date of {f.source.reference}" for f in undated_high] + ([_MISSING] if not_numbers else []),
            notes=notes,
        )
    return result(NAME, Status.MET, reason, evidence=[f.source for f in latest])
