"""The six Milan criteria: pure functions over the facts of a :class:`~milan_fhir._domain.PatientRecord`.

Each criterion is the module of its name, ``milan_fhir._criteria.<name>``, with ``NAME`` and
``evaluate(record, rules, as_of) -> CriterionResult`` (criteria.md §3, §3a, §4); the modules are found by the
names of ``_domain.CRITERIA``, so a new criterion is its module and its name in the registry, nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from importlib import import_module

from .._domain import CRITERIA, CriterionResult, PatientRecord, RuleSet

__all__ = ["CRITERION_FUNCTIONS", "CriterionFunction"]

CriterionFunction = Callable[[PatientRecord, RuleSet, date], CriterionResult]


def _function(name: str) -> CriterionFunction:
    module = import_module(f"{__name__}.{name}")
    if getattr(module, "NAME", None) != name:  # pragma: no cover - a misnamed module is a bug found at import
        raise ImportError(f"{module.__name__} must set NAME = {name!r}")
    fn: CriterionFunction = module.evaluate
    return fn


#: criterion name -> evaluate function, in the order of ``_domain.CRITERIA``.
CRITERION_FUNCTIONS: dict[str, CriterionFunction] = {name: _function(name) for name in CRITERIA}
