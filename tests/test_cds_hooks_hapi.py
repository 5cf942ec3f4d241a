"""A hook call with partial prefetch: what prefetch lacks is read from ``fhirServer`` (the local HAPI FHIR
server) through FhirClient with ``fhirAuthorization``; the card agrees with ``evaluate --server``."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests

import milan_fhir
from milan_fhir import FhirClient
from milan_fhir._service import ServiceConfig, create_app
from smart_servers import serve_asgi
from test_server_integration import private_patient

pytestmark = pytest.mark.hapi

AS_OF = dt.date(2026, 6, 30)


@pytest.mark.parametrize("given", [("patient",), ("patient", "conditions"), ()])
def test_partial_prefetch_is_completed_from_the_fhir_server(hapi_base_url, fhir_run_tag, given):
    tag = (fhir_run_tag.system, fhir_run_tag.code)
    seen_tokens: list[str | None] = []

    def client_factory(base_url, token):
        seen_tokens.append(token)
        return FhirClient(base_url, token=token, retries=1)

    with FhirClient(hapi_base_url) as client:
        pid = private_patient(client, tag)
        expected = milan_fhir.evaluate_patient(client, pid, as_of=AS_OF)
        prefetch = {}
        if "patient" in given:
            prefetch["patient"] = client.read("Patient", pid)
        if "conditions" in given:
            prefetch["conditions"] = client.search_page("Condition", {"subject": f"Patient/{pid}"})
    config = ServiceConfig(milan_fhir.default_mappings(), None, "http://x", as_of=AS_OF, insecure_no_auth=True,
                           client_factory=client_factory)
    with serve_asgi(lambda base: create_app(config)) as base_url:
        body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": pid},
                "fhirServer": hapi_base_url, "prefetch": prefetch,
                "fhirAuthorization": {"access_token": "ehr-issued-token", "token_type": "Bearer", "expires_in": 300,
                                      "scope": "patient/*.read", "subject": "milan-fhir"}}
        resp = requests.post(f"{base_url}/cds-services/milan-net", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    (card,) = resp.json()["cards"]
    line = card["extension"]["milan-fhir"]
    want = milan_fhir.to_json(expected)
    assert line["verdict"] == want["verdict"] == "eligible"
    assert {k: v["status"] for k, v in line["criteria"].items()} == {k: v["status"] for k, v in want["criteria"].items()}
    assert seen_tokens == ["ehr-issued-token"]
    for key in ("patient", "conditions", "observations", "procedures"):
        origin = "prefetch" if key in given else "fhirServer"
        assert f"{key} from {origin}" in card["detail"]
