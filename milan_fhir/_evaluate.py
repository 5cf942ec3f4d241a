"""Run the six criteria on one patient's facts and decide the verdict (criteria.md §2).

``evaluate_record`` never raises on a :class:`PatientRecord` that validates: a criterion that fails
unexpectedly yields an ``indeterminate`` result saying so, never a crash of the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from ._criteria import CRITERION_FUNCTIONS
from ._criteria._subgroups import subgroups
from ._domain import (
    CAPPING_CAUTIONS,
    CRITERIA,
    EXCLUDING_CAUTIONS,
    Caution,
    CriterionResult,
    Evaluation,
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


def evaluate_record(record: PatientRecord, rules: RuleSet, as_of: date, mapping_version: str) -> Evaluation:
    """Evaluate all criteria of ``rules`` for ``record`` as of ``as_of`` (on-or-before filtering is per criterion)."""
    results = {name: _run(name, record, rules, as_of) for name in CRITERIA}
    return Evaluation(
        patient=record.patient,
        as_of=as_of,
        rule_set=rules.name,
        rule_set_version=rules.version,
        mapping_version=mapping_version,
        verdict=verdict(results),
        criteria=results,
        ignored=tuple(record.ignored),
        unusable=tuple(record.unusable),
        inputs=dict(record.inputs),
        subgroups=subgroups(record, as_of),
        record=record,
    )
