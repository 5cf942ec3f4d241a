"""milan-fhir: the Milan criteria for liver transplantation in NET liver metastases, from FHIR R4 data.

    >>> import milan_fhir
    >>> for ev in milan_fhir.evaluate("patients.ndjson", as_of="2026-01-15"):
    ...     print(ev.patient, ev.verdict, [c.code for c in ev.cautions])

Everything public is listed in ``__all__``; modules starting with ``_`` are private.
"""

from __future__ import annotations

from . import errors
from ._api import (
    evaluate,
    render_table,
    structure_definitions,
    to_json,
    to_provenance,
    to_risk_assessment,
)
from ._domain import Caution, CriterionResult, Evaluation, PatientRecord, RuleSet, Status, Verdict
from ._mappings import Mappings, default_mappings, load_mappings
from ._adapters._located import InputProblem
from ._client import FhirClient, evaluate_patient, write_back
from ._client._smart import SmartBackendAuth
from ._cohort import run_cohort


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milan-fhir")
    except PackageNotFoundError:
        return "0.0.0+local"


__version__ = _version()

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
