"""The RiskAssessments the writer builds, with cautions (criteria.md §1c, §5 v2), pass ``$validate`` on a real
HAPI FHIR server against the project's own profile and StructureDefinitions; a caution missing its required
reason does not."""

from __future__ import annotations

import copy

import pytest

from milan_fhir._client import FhirClient, upload_definitions, validate_resource
from milan_fhir._domain import Verdict
from milan_fhir._mappings import default_mappings
from milan_fhir._writers import fhir

from _writer_samples import CAUTIONS, evaluation, full_record

pytestmark = pytest.mark.hapi


@pytest.fixture(scope="module")
def client(hapi_base_url, fhir_run_tag):
    with FhirClient(hapi_base_url, retries=2, timeout=120) as c:
        upload_definitions(c, tag=(fhir_run_tag.system, fhir_run_tag.code))
        yield c


def _errors(issues: list[dict]) -> list[dict]:
    return [i for i in issues if i.get("severity") in ("error", "fatal")]


CASES = {
    "eligible-with-prior-malignancy": dict(record=full_record(), cautions=[CAUTIONS["prior-malignancy"]]),
    "ineligible-deceased-transplanted": dict(cautions=[CAUTIONS["deceased"], CAUTIONS["prior-liver-transplant"]]),
    "capped-other-malignancy-no-record": dict(
        cautions=[CAUTIONS["other-malignancy"], CAUTIONS["no-liver-metastasis-record"]]
    ),
    "no-cautions": dict(record=full_record()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_risk_assessments_with_cautions_validate(client, case):
    ra = fhir.risk_assessment(evaluation(**CASES[case]), default_mappings())
    if case == "eligible-with-prior-malignancy":
        assert ra["prediction"][0]["outcome"]["coding"][0]["code"] == Verdict.ELIGIBLE and len(ra["prediction"]) > 1
    assert _errors(validate_resource(client, ra, profile=fhir.PROFILE_URL)) == []


def test_a_caution_without_its_reason_fails_validation(client):
    ra = fhir.risk_assessment(evaluation(cautions=[CAUTIONS["other-malignancy"]]), default_mappings())
    broken = copy.deepcopy(ra)
    caution = next(e for e in broken["prediction"][0]["outcome"]["extension"] if e["url"] == fhir.CAUTION_URL)
    caution["extension"] = [p for p in caution["extension"] if p["url"] != "reason"]
    assert _errors(validate_resource(client, broken, profile=fhir.PROFILE_URL))
