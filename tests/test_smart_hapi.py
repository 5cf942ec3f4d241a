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


def test_cohort_export_and_write_back_workers_through_smart(hapi_base_url, fhir_run_tag, tmp_path):
    """$export (kick-off, polls, Binary downloads) and the write-back worker processes, all through the proxy with
    SMART tokens: the workers get the SmartBackendAuth pickled (the key travels, no token)."""
    from milan_fhir import SmartBackendAuth, run_cohort
    from milan_fhir._client import entry_error
    from milan_fhir._cohort._export import bulk_export
    from test_cohort import make_export
    from test_cohort_hapi import _resources

    prefix = "s" + fhir_run_tag.code[:9]
    resources = _resources(make_export(tmp_path / "gen", patients=6, resources=12, net_fraction=0.5, parts=1),
                           prefix, fhir_run_tag)
    group = fhir_run_tag.apply({"resourceType": "Group", "id": f"smart-{prefix}", "type": "person", "actual": True,
                                "member": [{"entity": {"reference": f"Patient/{r['id']}"}}
                                           for r in resources if r["resourceType"] == "Patient"]})
    with FhirClient(hapi_base_url) as direct:
        answer = direct.transaction([{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                                     for r in [*resources, group]], idempotent=True)
        assert all(entry_error(e, "upload") is None for e in answer.get("entry", []))
    key = rsa_key()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem(key))
    tag = (fhir_run_tag.system, fhir_run_tag.code)
    with AuthServer() as auth, TokenCheckingProxy(auth, hapi_base_url) as proxy:
        smart = SmartBackendAuth("registry", key_file, fhir_base_url=proxy.base_url, write=True)
        auth.register("registry", smart.public_jwks())
        with FhirClient(proxy.base_url, auth=smart) as client:
            export = bulk_export(client, tmp_path / "out" / "export", group=group["id"], poll_cap=5.0, timeout=300,
                                 log=lambda m: None)
            summary = run_cohort(tmp_path / "out" / "export", tmp_path / "out", as_of=AS_OF, workers=2,
                                 write_back={"base_url": proxy.base_url, "token": smart.access_token, "tag": tag,
                                             "batch_size": 5})
            for url in export.urls:
                client.request("DELETE", url)
        statuses = [s for _, _, s in proxy.log]
        assert 401 not in statuses and 403 not in statuses
        assert any(p.endswith("/$export") for _, p, _ in proxy.log)
    assert summary["write_back"]["failed"] == 0 and summary["write_back"]["created"] == summary["tally"]["patients"] >= 1
