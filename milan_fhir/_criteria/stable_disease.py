"""``stable_disease`` — stable disease or response for at least [stable_months] months (criteria.md §3, §3a).

Order of the rules: no assessment -> indeterminate; latest older than [status_stale_months] -> indeterminate
(stale, even if worsened); latest worsened -> not_met; S = earliest assessment after the last worsened one (or the
earliest of all); S at least [stable_months] before the latest -> met; else not_met if progression was recorded,
else indeterminate. On the same day a worsened assessment is taken as the later one.
"""

from __future__ import annotations

from datetime import date, timedelta

from .._dates import add_months, months_between
from .._domain import CriterionResult, DiseaseStatusFact, PatientRecord, RuleSet, Status
from ._common import cite, counts_recency, months_back, result, undated_clause, unusable_clause, unusable_of

NAME = "stable_disease"
_MISSING_ANY = "a disease-status assessment (LOINC 97509-4: improved, stable or worsened)"


def _cite(f: DiseaseStatusFact) -> str:
    return f"{f.trend} ({cite(f.source)})"


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    n = rules.stable_months
    stale_n = rules.status_stale_months
    notes = [
        unusable_clause(unusable_of(record, ("disease_status",))),
        undated_clause([f.source for f in record.disease_status if f.source.date is None], "assessments"),
    ]
    items = sorted(
        (f for f in record.disease_status if counts_recency(f.source, as_of)),
        key=lambda f: (f.source.date, f.trend == "worsened", f.source.reference),
    )
    if not items:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"No dated disease-status assessment on or before {as_of} is recorded",
            missing=(_MISSING_ANY,),
            notes=notes,
        )
    latest = items[-1]
    assert latest.source.date is not None
    stale_before = months_back(as_of, stale_n)
    if latest.source.date < stale_before:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"The latest disease-status assessment, {_cite(latest)}, is more than {stale_n} months before {as_of}",
            evidence=(latest.source,),
            missing=(f"{_MISSING_ANY} dated on or after {stale_before}",),
            notes=notes,
        )
    if latest.trend == "worsened":
        return result(
            NAME,
            Status.NOT_MET,
            f"The latest disease-status assessment, {_cite(latest)}, shows progression",
            evidence=(latest.source,),
        )
    last_worse = None
    for i, f in enumerate(items):
        if f.trend == "worsened":
            last_worse = i
    start = items[0] if last_worse is None else items[last_worse + 1]
    assert start.source.date is not None
    worse = items[last_worse] if last_worse is not None else None
    evidence = [start.source, latest.source] + ([worse.source] if worse else [])
    span = months_between(start.source.date, latest.source.date)
    if start.source.date <= months_back(latest.source.date, n):
        return result(
            NAME,
            Status.MET,
            f"Stable or responding disease for {span} months, from {_cite(start)} to {_cite(latest)}"
            + (f" after progression {_cite(worse)}" if worse else "")
            + f", at least the {n} months of {rules.name}",
            evidence=evidence,
        )
    if worse is not None:
        return result(
            NAME,
            Status.NOT_MET,
            f"Progression on {worse.source.date} ({worse.source.reference}); stable only {span} months "
            f"({_cite(start)} to {_cite(latest)}), less than the {n} months of {rules.name}",
            evidence=evidence,
        )
    return result(
        NAME,
        Status.INDETERMINATE,
        f"Stable since {start.source.date} ({start.source.reference}), follow-up to {_cite(latest)} "
        f"is {span} months, shorter than the {n} months of {rules.name}",
        evidence=evidence,
        missing=(f"{_MISSING_ANY} on or after {_first_qualifying(start.source.date, n)} showing the disease still stable",),
        notes=notes,
    )



def _first_qualifying(start: date, months: int) -> date:
    """The earliest assessment date E with ``start <= E minus months`` (clamping makes this not simply S + N)."""
    try:
        e = add_months(start, months)
        while months_back(e, months) < start:
            e += timedelta(days=1)
        return e
    except (ValueError, OverflowError):
        return date.max
