"""The six Milan criteria: pure functions over the facts of a :class:`~milan_fhir._domain.PatientRecord`.

Each module has ``evaluate(record, rules, as_of) -> CriterionResult`` (criteria.md §3, §3a, §4).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from .._domain import CRITERIA, CriterionResult, PatientRecord, RuleSet
from . import age, liver_burden, low_grade, no_extrahepatic_disease, primary_resected_portal, stable_disease

__all__ = ["CRITERION_FUNCTIONS", "CriterionFunction"]

CriterionFunction = Callable[[PatientRecord, RuleSet, date], CriterionResult]

_MODULES = {
    m.NAME: m.evaluate
    for m in (age, low_grade, liver_burden, primary_resected_portal, stable_disease, no_extrahepatic_disease)
}

#: criterion name -> evaluate function, in the order of ``_domain.CRITERIA``.
CRITERION_FUNCTIONS: dict[str, CriterionFunction] = {name: _MODULES[name] for name in CRITERIA}
