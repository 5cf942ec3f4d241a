"""``liver_burden`` — metastatic diffusion below [liver_burden_limit_percent] % of the liver volume.

The most recent dated measurement on or before ``as_of`` decides (criteria.md §3, §3a, §4). With
``liver_burden_inclusive`` the limit itself meets (milan-2007: at most 50 %), else it does not (milan-net).
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
    result,
    undated_clause,
    unusable_clause,
    unusable_of,
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
    # High means "does not meet": at or above the limit (strict rule), or above it (inclusive rule).
    high_inclusive = not rules.liver_burden_inclusive
    dated = [f for f in record.liver_burden if counts_recency(f.source, as_of) and valid_percent(f.percent)]
    undated = [f.source for f in record.liver_burden if f.source.date is None]
    notes = [
        unusable_clause(unusable_of(record, ("liver_burden",))),
        undated_clause(undated, "measurements"),
    ]
    not_numbers = [f.source.reference for f in record.liver_burden
                   if counts_existence(f.source, as_of) and not valid_percent(f.percent)]
    if not_numbers:
        notes.append("values that are not valid percentages not used: " + ", ".join(not_numbers))
    comparison = (
        f"{'at most' if rules.liver_burden_inclusive else 'below'} the {fmt_pct(limit)} % limit of {rules.name}"
    )
    if not dated:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"No dated measurement of the liver tumour burden on or before {as_of} is recorded",
            missing=(_MISSING,),
            notes=notes,
        )
    latest_date = max(f.source.date for f in dated)  # type: ignore[type-var]
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
    return result(
        NAME,
        Status.MET,
        f"Latest liver tumour burden is {_cite(top)}, {comparison}",
        evidence=[f.source for f in latest],
    )
