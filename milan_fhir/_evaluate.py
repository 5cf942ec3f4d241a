"""Run the six criteria on one patient's facts and decide the verdict (criteria.md §2).

``evaluate_record`` never raises on a :class:`PatientRecord` that validates: a criterion that fails
unexpectedly yields an ``indeterminate`` result saying so, never a crash of the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from ._criteria import CRITERION_FUNCTIONS
from ._criteria._attribution import net_view
from ._criteria._cautions import cautions as find_cautions
from ._criteria._subgroups import liver_metastasis, subgroups
from ._criteria.primary_resected_portal import ignored_procedures
from ._domain import (
    CAPPING_CAUTIONS,
    CRITERIA,
    EXCLUDING_CAUTIONS,
    Caution,
    CriterionResult,
    Evaluation,
    Ignored,
    PatientRecord,
    RuleSet,
    Status,
    Verdict,
)

__all__ = ["evaluate_record", "verdict"]


def verdict(
    results: Mapping[str, CriterionResult] | Iterable[CriterionResult], cautions: Iterable[Caution] = ()
) -> Verdict:
    """criteria.md §2 with §1c: ``ineligible`` if any criterion is not met or a caution excludes; else
    ``eligible`` if all are met and no caution caps; else ``indeterminate``.

    With no results at all the verdict is ``indeterminate`` (nothing shows the criteria hold).
    """
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    codes = {c.code for c in cautions}
    statuses = [r.status for r in items]
    if Status.NOT_MET in statuses or codes & EXCLUDING_CAUTIONS:
        return Verdict.INELIGIBLE
    if statuses and all(s is Status.MET for s in statuses) and not codes & CAPPING_CAUTIONS:
        return Verdict.ELIGIBLE
    return Verdict.INDETERMINATE


def _run(name: str, record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    try:
        return CRITERION_FUNCTIONS[name](record, rules, as_of)
    except Exception as exc:  # noqa: BLE001 - one criterion's bug must not stop a cohort run
        return CriterionResult(
            name=name,
            status=Status.INDETERMINATE,
            reason=f"This criterion could not be evaluated because of an internal error ({type(exc).__name__}); "
            "please report it.",
            missing=("a fix of the internal error in milan-fhir",),
        )


def _cautions(record: PatientRecord, rules: RuleSet, as_of: date) -> tuple[tuple[Caution, ...], list[Ignored], PatientRecord]:
    """(cautions, ignored entries of the attribution, the record with only the NET's grade evidence) (§1a, §1c).

    A failure here must not pass for "no caution": it becomes a capping caution saying so."""
    try:
        view = net_view(record, rules, as_of)
        found = find_cautions(record, rules, as_of, view)
        view.ignored.extend(ignored_procedures(record, rules, as_of, view))
        # the findings about another tumour are listed in `ignored` (criteria.md §1a, §6)
        for k in record.ki67:
            view.attribute(k.links, k.source.date, requires_link=k.requires_link, reference=k.source.reference)
        for g in record.grades:
            if not g.source.reference.startswith("Condition/") or g.links:
                view.attribute(g.links, g.source.date, reference=g.source.reference)
        for d in record.disease_status:
            view.attribute(d.links, d.source.date, reference=d.source.reference)
        for u in record.unusable:
            if u.concept in ("ki67", "histologic_grade", "disease_status"):
                view.attribute(u.links, u.date, reference=u.reference)
        net_only = record.model_copy(update={
            "ki67": [k for k in record.ki67 if view.attribute(
                k.links, k.source.date, requires_link=k.requires_link).kind == "net"],
            "grades": [g for g in record.grades if view.grade(g).kind == "net"],
        })
        return found, list(view.ignored), net_only
    except Exception as exc:  # noqa: BLE001 - a bug here must cap, never pass for "no caution"
        return (Caution(code="other-malignancy",
                        reason=f"The prerequisites could not be checked because of an internal error "
                               f"({type(exc).__name__}); please report it"),), [], record


def evaluate_record(record: PatientRecord, rules: RuleSet, as_of: date, mapping_version: str) -> Evaluation:
    """Evaluate all criteria of ``rules`` for ``record`` as of ``as_of`` (on-or-before filtering is per criterion),
    and the prerequisites of criteria.md §1c (``cautions``), which the verdict honours."""
    results = {name: _run(name, record, rules, as_of) for name in CRITERIA}
    found, more_ignored, net_only = _cautions(record, rules, as_of)
    ignored = list(record.ignored)
    seen = {(i.reference, i.reason) for i in ignored}
    for i in more_ignored:
        if (i.reference, i.reason) not in seen:
            seen.add((i.reference, i.reason))
            ignored.append(i)
    return Evaluation(
        patient=record.patient,
        as_of=as_of,
        rule_set=rules.name,
        rule_set_version=rules.version,
        mapping_version=mapping_version,
        verdict=verdict(results, found),
        criteria=results,
        ignored=tuple(ignored),
        unusable=tuple(record.unusable),
        inputs=dict(record.inputs),
        cautions=found,
        subgroups=subgroups(net_only.model_copy(update={"ignored": ignored}), as_of, results),
        liver_metastasis=liver_metastasis(record, as_of),
        record=record,
    )
