"""``age`` — age at most [age_max_years] whole years on ``as_of`` (criteria.md §3, §3a)."""

from __future__ import annotations

from datetime import date

from .._dates import whole_years
from .._domain import CriterionResult, PatientRecord, RuleSet, Status
from ._common import result, unusable_clause, unusable_of

NAME = "age"
_MISSING = "the patient's date of birth (Patient.birthDate)"


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    limit = rules.age_max_years
    demo = record.demographics
    if demo is None:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"No usable Patient resource was found for {record.patient} (a Patient that cannot be read is reported "
            "with the input problems), so the age is not known",
            missing=(f"the Patient resource of {record.patient} with its birthDate",),
        )
    src = demo.source
    born = demo.birth_date
    if born is None:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"{src.reference} has no usable birthDate, so the age is not known",
            evidence=(src,),
            missing=(_MISSING,),
            notes=[unusable_clause(unusable_of(record, ("age", "birth_date")))],
        )
    try:
        earliest, latest = born.earliest(), born.latest()
    except (ValueError, OverflowError):
        return result(
            NAME,
            Status.INDETERMINATE,
            f"The birthDate {born} of {src.reference} is not a valid date",
            evidence=(src,),
            missing=(_MISSING,),
        )
    if latest > as_of:
        return result(
            NAME,
            Status.INDETERMINATE,
            f"The birthDate {born} of {src.reference} is (or may be) after the evaluation date {as_of}",
            evidence=(src,),
            missing=(f"a birthDate on or before {as_of}",),
        )
    oldest = whole_years(earliest, as_of)  # born as early as possible
    youngest = whole_years(latest, as_of)  # born as late as possible
    cited = f"birthDate {born}, {src.reference}"
    limit_text = f"the limit of {limit} years of {rules.name}"
    if oldest == youngest:
        age_text = f"Age {oldest} years on {as_of} ({cited})"
    else:
        age_text = f"Age {youngest} to {oldest} years on {as_of} (partial {cited})"
    if oldest <= limit:
        return result(NAME, Status.MET, f"{age_text} is within {limit_text}", evidence=(src,))
    if youngest > limit:
        return result(NAME, Status.NOT_MET, f"{age_text} is above {limit_text}", evidence=(src,))
    return result(
        NAME,
        Status.INDETERMINATE,
        f"{age_text} may or may not be above {limit_text}, depending on the exact date of birth",
        evidence=(src,),
        missing=(f"the full date of birth (Patient.birthDate with day and month; recorded: {born})",),
    )
