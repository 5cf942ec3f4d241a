"""SMART Backend Services against the local HAPI FHIR server behind a token-checking proxy: ``evaluate --server
--write-back`` gets read and write scopes, reads in one batch and writes the RiskAssessment with its Provenance."""

from __future__ import annotations

import orjson
import pytest

import milan_fhir
from milan_fhir import FhirClient
from milan_fhir._cli import main
from smart_servers import AuthServer, TokenCheckingProxy, pem, public_jwk, rsa_key
from test_server_integration import private_patient

pytestmark = pytest.mark.hapi

AS_OF = "2026-06-30"


def test_evaluate_server_write_back_through_smart(hapi_base_url, fhir_run_tag, tmp_path, monkeypatch, capsys):
    tag = (fhir_run_tag.system, fhir_run_tag.code)
    key = rsa_key()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem(key))
    with FhirClient(hapi_base_url) as direct:
        pid = private_patient(direct, tag)
        expected = milan_fhir.evaluate_patient(direct, pid, as_of=AS_OF)
    with AuthServer() as auth, TokenCheckingProxy(auth, hapi_base_url) as proxy:
        auth.register("registry", {"keys": [public_jwk(key, "reg-1", "RS384")]})
        for name, value in (("MILAN_FHIR_SMART_CLIENT_ID", "registry"), ("MILAN_FHIR_SMART_KEY", str(key_file)),
                            ("MILAN_FHIR_SMART_KID", "reg-1")):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MILAN_FHIR_TOKEN", raising=False)
        status = main(["evaluate", "--server", proxy.base_url, "--patient", pid, "--as-of", AS_OF, "--format", "json",
                       "--write-back"])
        out, err = capsys.readouterr()
        assert status == 0, err
        assert "created" in err
        scopes = auth.issued[0]["scope"].split()
        assert "system/Observation.rs" in scopes and "system/RiskAssessment.cru" in scopes
        assert 401 not in [s for _, _, s in proxy.log] and 403 not in [s for _, _, s in proxy.log]
    (line,) = [orjson.loads(x) for x in out.splitlines()]
    assert line["verdict"] == str(expected.verdict)
    with FhirClient(hapi_base_url) as direct:
        found = list(direct.search("RiskAssessment", {"subject": f"Patient/{pid}"}))
        assert len(found) == 1
        # the RiskAssessment carries the run tag only if tagged; tag it so the session purge removes it
        for ra in found:
            fhir_run_tag.apply(ra)
            direct.json("PUT", f"RiskAssessment/{ra['id']}", body=ra)
        for prov in direct.search("Provenance", {"target": f"RiskAssessment/{found[0]['id']}"}):
            fhir_run_tag.apply(prov)
            direct.json("PUT", f"Provenance/{prov['id']}", body=prov)
