"""milan-fhir: the Milan criteria for liver transplantation in NET liver metastases, from FHIR R4 data.

    >>> import milan_fhir
    >>> for ev in milan_fhir.evaluate("patients.ndjson", as_of="2026-01-15"):
    ...     print(ev.patient, ev.verdict, [c.code for c in ev.cautions])

Everything public is listed in ``__all__``; modules starting with ``_`` are private. The names are imported when
first used (PEP 562), so that ``import milan_fhir`` and a command that needs only part of the package start
quickly: ``milan_fhir.FhirClient`` imports the HTTP client, ``milan_fhir.run_cohort`` the cohort engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: public name -> (module, attribute); imported on first access
_LAZY = {
    "evaluate": ("._api", "evaluate"),
    "render_table": ("._api", "render_table"),
    "structure_definitions": ("._api", "structure_definitions"),
    "to_json": ("._api", "to_json"),
    "to_provenance": ("._api", "to_provenance"),
    "to_risk_assessment": ("._api", "to_risk_assessment"),
    "Caution": ("._domain", "Caution"),
    "CriterionResult": ("._domain", "CriterionResult"),
    "Evaluation": ("._domain", "Evaluation"),
    "PatientRecord": ("._domain", "PatientRecord"),
    "RuleSet": ("._domain", "RuleSet"),
    "Status": ("._domain", "Status"),
    "Verdict": ("._domain", "Verdict"),
    "Mappings": ("._mappings", "Mappings"),
    "default_mappings": ("._mappings", "default_mappings"),
    "load_mappings": ("._mappings", "load_mappings"),
    "InputProblem": ("._adapters._located", "InputProblem"),
    "FhirClient": ("._client", "FhirClient"),
    "evaluate_patient": ("._client", "evaluate_patient"),
    "write_back": ("._client", "write_back"),
    "SmartBackendAuth": ("._client._smart", "SmartBackendAuth"),
    "run_cohort": ("._cohort", "run_cohort"),
    "errors": (".errors", None),
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import errors
    from ._adapters._located import InputProblem
    from ._api import (
        evaluate,
        render_table,
        structure_definitions,
        to_json,
        to_provenance,
        to_risk_assessment,
    )
    from ._client import FhirClient, evaluate_patient, write_back
    from ._client._smart import SmartBackendAuth
    from ._cohort import run_cohort
    from ._domain import Caution, CriterionResult, Evaluation, PatientRecord, RuleSet, Status, Verdict
    from ._mappings import Mappings, default_mappings, load_mappings


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    else:
        try:
            module, attr = _LAZY[name]
        except KeyError:
            raise AttributeError(f"module 'milan_fhir' has no attribute {name!r}") from None
        from importlib import import_module

        mod = import_module(module, __name__)
        value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milan-fhir")
    except PackageNotFoundError:
        return "0.0.0+local"


__all__ = [
    "__version__",
    "evaluate",
    "load_mappings",
    "default_mappings",
    "to_json",
    "to_risk_assessment",
    "to_provenance",
    "render_table",
    "structure_definitions",
    "Evaluation",
    "CriterionResult",
    "Caution",
    "Status",
    "Verdict",
    "PatientRecord",
    "RuleSet",
    "Mappings",
    "InputProblem",
    "errors",
    "FhirClient",
    "run_cohort",
    "evaluate_patient",
    "write_back",
    "SmartBackendAuth",
]
