"""``stable_disease`` — stable disease or response for at least [stable_months] months (criteria.md §3, §3a, §1d).

Order of the rules: assessments are those that count for the NET (§1a: about another tumour they are dropped,
unlinked beside another malignancy they are ambiguous); no assessment -> indeterminate; latest older than
[status_stale_months] -> indeterminate (stale, even if worsened); a newer unusable assessment, or a latest
``undetermined`` one -> indeterminate; latest worsened -> not_met; S = earliest assessment after the last
worsened one (or the earliest of all), counted at its latest possible day (v2: a partial date never lengthens a
run); S at least [stable_months] before the latest -> met; else not_met if progression was recorded, else
indeterminate. On the same day a worsened assessment is taken as the later one. A result that rests on an
ambiguous assessment is at most indeterminate; an undated worsened assessment or an unusable one on the latest
day caps.
"""

from __future__ import annotations

from datetime import date, timedelta

from .._dates import add_months, months_between
from .._domain import CriterionResult, DiseaseStatusFact, PatientRecord, RuleSet, Source, Status
from ._attribution import net_view
from ._common import cite, counts_recency, months_back, result, undated_clause, unusable_clause

NAME = "stable_disease"
_MISSING_ANY = "a disease-status assessment (LOINC 97509-4: improved, stable or worsened)"
_MISSING_LINK = "Observation.focus linking the value to the NET, or a NET-specific value"
_RANK = {"improved": 0, "stable": 0, "undetermined": 1, "worsened": 2}


def _cite(f: DiseaseStatusFact) -> str:
    return f"{f.trend} ({cite(f.source)})"


def _start_day(f: DiseaseStatusFact) -> date:
    assert f.source.date is not None
    return f.latest_date or f.source.date


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    n = rules.stable_months
    stale_n = rules.status_stale_months
    view = net_view(record, rules, as_of)
    ambiguous: dict[str, str] = {}
    facts: list[DiseaseStatusFact] = []
    for f in record.disease_status:
        a = view.attribute(f.links, f.source.date, reference=f.source.reference)
        if a.kind == "other":
            continue
        if a.kind == "ambiguous":
            ambiguous[f.source.reference] = a.why
        facts.append(f)
    bad = [u for u in record.unusable if u.concept == "disease_status" and (u.date is None or u.date <= as_of)
           and view.attribute(u.links, u.date).kind != "other"]
    notes = [
        unusable_clause(bad),
        undated_clause([f.source for f in facts if f.source.date is None and f.trend != "worsened"], "assessments"),
    ]
    items = sorted(
        (f for f in facts if counts_recency(f.source, as_of)),
        key=lambda f: (f.source.date, _RANK[f.trend], f.source.reference),
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
    newer_bad = [u for u in bad if u.date is not None and u.date > latest.source.date]
    if newer_bad:
        return result(
            NAME,
            Status.INDETERMINATE,
            "The latest disease-status assessment cannot be read: " + ", ".join(
                f"{u.reference} ({u.date}: {u.reason})" for u in newer_bad)
            + f", newer than {_cite(latest)}",
            evidence=(latest.source,),
            missing=(f"a readable value for {', '.join(u.reference for u in newer_bad)}",),
        )
    if latest.trend == "undetermined":
        return result(
            NAME,
            Status.INDETERMINATE,
            f"The latest disease-status assessment, {_cite(latest)}, is undetermined",
            evidence=(latest.source,),
            missing=(f"{_MISSING_ANY} after {latest.source.date}",),
            notes=notes,
        )
    # caps (criteria.md §1d): they make the criterion unable to be met
    caps: list[str] = []
    cap_missing: list[str] = []
    undated_worse = [f for f in facts if f.source.date is None and f.trend == "worsened"]
    if undated_worse:
        caps.append("undated progression " + ", ".join(f.source.reference for f in undated_worse))
        cap_missing.append("the date of " + ", ".join(f.source.reference for f in undated_worse))
    same_day_bad = [u for u in bad if u.date == latest.source.date or u.date is None]
    if same_day_bad:
        caps.append("unreadable assessment " + ", ".join(f"{u.reference} ({u.reason})" for u in same_day_bad)
                    + (" on the latest day" if any(u.date for u in same_day_bad) else ", undated"))
        cap_missing.append("a readable value for " + ", ".join(u.reference for u in same_day_bad))

    def rests_on_ambiguous(sources: list[DiseaseStatusFact], status: Status, reason: str,
                           evidence: list[Source]) -> CriterionResult | None:
        amb = [f for f in sources if f.source.reference in ambiguous]
        if not amb:
            return None
        f = amb[0]
        return result(
            NAME,
            Status.INDETERMINATE,
            f"{reason}; but it rests on {f.source.reference}, whose tumour is not clear: "
            f"{ambiguous[f.source.reference]}",
            evidence=evidence,
            missing=(_MISSING_LINK,),
            notes=notes,
        )

    if latest.trend == "worsened":
        reason = f"The latest disease-status assessment, {_cite(latest)}, shows progression"
        amb = rests_on_ambiguous([latest], Status.NOT_MET, reason, [latest.source])
        return amb or result(NAME, Status.NOT_MET, reason, evidence=(latest.source,))
    run = [f for f in items if f.trend != "undetermined"]
    last_worse = None
    for i, f in enumerate(run):
        if f.trend == "worsened":
            last_worse = i
    start = run[0] if last_worse is None else run[last_worse + 1]
    worse = run[last_worse] if last_worse is not None else None
    evidence = [start.source, latest.source] + ([worse.source] if worse else [])
    start_day = _start_day(start)
    span = months_between(start_day, latest.source.date)
    partial = f" (counted from {start_day}, the latest day its date allows)" if start.latest_date else ""
    if start_day <= months_back(latest.source.date, n):
        reason = (
            f"Stable or responding disease for {span} months, from {_cite(start)}{partial} to {_cite(latest)}"
            + (f" after progression {_cite(worse)}" if worse else "")
            + f", at least the {n} months of {rules.name}"
        )
        if caps:
            return result(NAME, Status.INDETERMINATE, f"{reason}; but not settled: " + "; ".join(caps),
                          evidence=evidence, missing=cap_missing, notes=notes)
        amb = rests_on_ambiguous([start, latest] + ([worse] if worse else []), Status.MET, reason, evidence)
        return amb or result(NAME, Status.MET, reason, evidence=evidence)
    if worse is not None:
        reason = (
            f"Progression on {worse.source.date} ({worse.source.reference}); stable only {span} months "
            f"({_cite(start)}{partial} to {_cite(latest)}), less than the {n} months of {rules.name}"
        )
        amb = rests_on_ambiguous([worse], Status.NOT_MET, reason, evidence)
        return amb or result(NAME, Status.NOT_MET, reason, evidence=evidence)
    return result(
        NAME,
        Status.INDETERMINATE,
        f"Stable since {start_day} ({start.source.reference}){partial}, follow-up to {_cite(latest)} "
        f"is {span} months, shorter than the {n} months of {rules.name}",
        evidence=evidence,
        missing=(f"{_MISSING_ANY} on or after {_first_qualifying(start_day, n)} showing the disease still stable",
                 *cap_missing),
        notes=notes + caps,
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
