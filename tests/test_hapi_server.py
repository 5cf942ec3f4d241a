"""The HAPI FHIR server of the integration tests honours what milan-fhir's client relies on.

Runs against ``hapi_base_url`` (the local ``tests/hapi-server`` build, or ``$MILAN_FHIR_BASE_URL``). Every
resource written carries the session's ``fhir_run_tag`` and is purged at session end. Only ``requests``.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

import hapi

pytestmark = pytest.mark.hapi

FHIR_JSON = "application/fhir+json"
IDS = "http://milan-fhir.org/fhir/test-identifier"
EXPORT_DEADLINE_S = 120


@pytest.fixture(scope="module")
def http():
    with requests.Session() as s:
        s.headers.update({"Accept": FHIR_JSON})
        yield s


def _put(http, base, resource, **headers):
    return http.put(
        f"{base}/{resource['resourceType']}/{resource['id']}",
        json=resource,
        headers={"Content-Type": FHIR_JSON, **headers},
        timeout=60,
    )


def _post(http, url, body, **headers):
    return http.post(url, json=body, headers={"Content-Type": FHIR_JSON, **headers}, timeout=60)


def _search(http, base, query):
    r = http.get(f"{base}/{query}", timeout=60)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def _ids(bundle, rtype=None):
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if rtype is None or e["resource"]["resourceType"] == rtype
    }


def _patient(tag, pid=None, **fields):
    p = {"resourceType": "Patient", **fields}
    if pid is not None:
        p["id"] = pid
    return tag.apply(p)


def _numeric_id() -> str:
    # numeric, and unique enough not to collide on a shared server
    return str(uuid.uuid4().int)[:15]


def test_client_assigned_numeric_and_alphanumeric_ids(http, hapi_base_url, fhir_run_tag):
    for pid in (_numeric_id(), f"milan-{uuid.uuid4().hex[:12]}"):
        r = _put(http, hapi_base_url, _patient(fhir_run_tag, pid, gender="female"))
        assert r.status_code == 201, r.text
        got = http.get(f"{hapi_base_url}/Patient/{pid}", timeout=60)
        assert got.status_code == 200
        assert got.json()["id"] == pid
        assert got.json()["meta"]["versionId"] == "1"


def test_transaction_resolves_placeholders(http, hapi_base_url, fhir_run_tag):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                "resource": _patient(fhir_run_tag, gender="male"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    patient_url = bundle["entry"][0]["fullUrl"]
    obs_id = f"tx-{uuid.uuid4().hex[:12]}"
    bundle["entry"].append(
        {
            "fullUrl": f"{hapi_base_url}/Observation/{obs_id}",
            "resource": fhir_run_tag.apply(
                {
                    "resourceType": "Observation",
                    "id": obs_id,
                    "status": "final",
                    "code": {"text": "Ki-67"},
                    "subject": {"reference": patient_url},
                }
            ),
            "request": {"method": "PUT", "url": f"Observation/{obs_id}"},
        }
    )
    r = _post(http, hapi_base_url, bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert all(s.startswith("201") for s in statuses), statuses
    patient_id = out["entry"][0]["response"]["location"].split("/")[1]
    obs = http.get(f"{hapi_base_url}/Observation/{obs_id}", timeout=60).json()
    assert obs["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_is_atomic(http, hapi_base_url, fhir_run_tag):
    family = uuid.uuid4().hex
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient(fhir_run_tag, name=[{"family": family}]), "request": {"method": "POST", "url": "Patient"}},
            # reference to a resource that does not exist: the whole transaction must fail
            {
                "resource": fhir_run_tag.apply(
                    {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": f"Patient/missing-{uuid.uuid4().hex}"}}
                ),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = _post(http, hapi_base_url, bundle)
    assert 400 <= r.status_code < 500, r.text
    assert _search(http, hapi_base_url, f"Patient?family={family}").get("entry", []) == []


def test_batch_of_searches(http, hapi_base_url, fhir_run_tag):
    pid = _numeric_id()
    assert _put(http, hapi_base_url, _patient(fhir_run_tag, pid)).status_code == 201
    obs = fhir_run_tag.apply(
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}}
    )
    assert _post(http, f"{hapi_base_url}/Observation", obs).status_code == 201
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?_id={pid}"}},
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{pid}&_total=accurate"}},
            {"request": {"method": "GET", "url": f"Condition?subject=Patient/{pid}"}},
        ],
    }
    r = _post(http, hapi_base_url, batch)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    assert [e["response"]["status"][:3] for e in out["entry"]] == ["200", "200", "200"]
    results = [e["resource"] for e in out["entry"]]
    assert all(b["type"] == "searchset" for b in results)
    assert _ids(results[0]) == {pid}
    assert len(results[1]["entry"]) == 1 and results[1]["total"] == 1
    assert results[2].get("entry", []) == []


def test_search_results_are_not_cached(http, hapi_base_url, fhir_run_tag):
    family = uuid.uuid4().hex
    query = f"Patient?family={family}&_total=accurate"
    assert _post(http, f"{hapi_base_url}/Patient", _patient(fhir_run_tag, name=[{"family": family}])).status_code == 201
    first = _search(http, hapi_base_url, query)
    again = _search(http, hapi_base_url, query)  # a server reusing results would cache this one
    assert len(first["entry"]) == len(again["entry"]) == 1
    assert first["total"] == 1
    assert _post(http, f"{hapi_base_url}/Patient", _patient(fhir_run_tag, name=[{"family": family}])).status_code == 201
    after = _search(http, hapi_base_url, query)
    assert len(after["entry"]) == 2
    assert after["total"] == 2


def test_if_match_version_conflict(http, hapi_base_url, fhir_run_tag):
    pid = f"im-{uuid.uuid4().hex[:12]}"
    assert _put(http, hapi_base_url, _patient(fhir_run_tag, pid)).status_code == 201
    r = _put(http, hapi_base_url, _patient(fhir_run_tag, pid, active=True), **{"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.headers.get("ETag") == 'W/"2"'
    stale = _put(http, hapi_base_url, _patient(fhir_run_tag, pid, active=False), **{"If-Match": 'W/"1"'})
    # FHIR says 412; HAPI answers 409 (HAPI-0989 "not the current version"). The client treats both as conflict.
    assert stale.status_code in (409, 412), stale.text
    assert http.get(f"{hapi_base_url}/Patient/{pid}", timeout=60).json()["active"] is True


def test_conditional_create_by_identifier(http, hapi_base_url, fhir_run_tag):
    value = uuid.uuid4().hex
    body = _patient(fhir_run_tag, identifier=[{"system": IDS, "value": value}])
    first = _post(http, f"{hapi_base_url}/Patient", body, **{"If-None-Exist": f"identifier={IDS}|{value}"})
    assert first.status_code == 201, first.text
    second = _post(http, f"{hapi_base_url}/Patient", body, **{"If-None-Exist": f"identifier={IDS}|{value}"})
    assert second.status_code == 200, second.text
    assert first.headers["Location"].split("/_history")[0] == second.headers["Location"].split("/_history")[0]
    found = _search(http, hapi_base_url, f"Patient?identifier={IDS}|{value}&_total=accurate")
    assert found["total"] == 1


def test_patient_everything(http, hapi_base_url, fhir_run_tag):
    pid = _numeric_id()
    assert _put(http, hapi_base_url, _patient(fhir_run_tag, pid)).status_code == 201
    ref = {"reference": f"Patient/{pid}"}
    obs = fhir_run_tag.apply({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": ref})
    cond = fhir_run_tag.apply({"resourceType": "Condition", "code": {"text": "NET"}, "subject": ref})
    obs_id = _post(http, f"{hapi_base_url}/Observation", obs).headers["Location"].split("/")[-3]
    cond_id = _post(http, f"{hapi_base_url}/Condition", cond).headers["Location"].split("/")[-3]
    r = http.get(f"{hapi_base_url}/Patient/{pid}/$everything", params={"_count": "100"}, timeout=60)
    assert r.status_code == 200, r.text
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json().get("entry", [])}
    assert {("Patient", pid), ("Observation", obs_id), ("Condition", cond_id)} <= got


def test_validate_operation(http, hapi_base_url):
    ok = _post(http, f"{hapi_base_url}/Patient/$validate", {"resourceType": "Patient", "gender": "female"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["resourceType"] == "OperationOutcome"
    bad = _post(http, f"{hapi_base_url}/Observation/$validate", {"resourceType": "Observation", "status": "final"})
    assert bad.status_code in (200, 412, 422)  # Observation.code missing: an error issue either way
    assert any(i["severity"] in ("error", "fatal") for i in bad.json()["issue"])


def test_bulk_export_completes(http, hapi_base_url, fhir_run_tag):
    pid = _numeric_id()
    assert _put(http, hapi_base_url, _patient(fhir_run_tag, pid)).status_code == 201
    kick = http.get(
        f"{hapi_base_url}/$export",
        params={"_type": "Patient", "_typeFilter": f"Patient?_tag={fhir_run_tag.token}"},
        headers={"Prefer": "respond-async", "Accept": FHIR_JSON},
        timeout=60,
    )
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    deadline = time.monotonic() + EXPORT_DEADLINE_S
    while True:
        poll = http.get(status_url, headers={"Accept": "application/json"}, timeout=60)
        if poll.status_code != 202:
            break
        assert time.monotonic() < deadline, f"bulk export still running after {EXPORT_DEADLINE_S} s"
        try:
            wait = float(poll.headers.get("Retry-After", "2"))
        except ValueError:
            wait = 2.0
        time.sleep(min(max(wait, 0.5), 10.0))
    assert poll.status_code == 200, poll.text
    manifest = poll.json()
    assert manifest.get("error", []) == []
    outputs = manifest["output"]
    assert {o["type"] for o in outputs} == {"Patient"}
    lines = []
    try:
        for o in outputs:
            f = http.get(o["url"], headers={"Accept": "application/fhir+ndjson"}, timeout=60)
            assert f.status_code == 200, f.text
            lines += [line for line in f.text.splitlines() if line.strip()]
        assert any(f'"id":"{pid}"' in line for line in lines)
    finally:
        # the export files are Binary resources on the server: remove them and the job
        for o in outputs:
            http.delete(o["url"], timeout=60)
        http.delete(status_url, timeout=60)


def test_purge_removes_tagged_data(http, hapi_base_url):
    tag = hapi.RunTag.new()  # own tag: the session's tag must survive until session end
    pid = _numeric_id()
    assert _put(http, hapi_base_url, _patient(tag, pid)).status_code == 201
    for _ in range(2):
        obs = tag.apply(
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}}
        )
        assert _post(http, f"{hapi_base_url}/Observation", obs).status_code == 201
    obs_ids = _ids(_search(http, hapi_base_url, f"Observation?_tag={tag.token}"))
    assert len(obs_ids) == 2
    # a CodeSystem with concepts: HAPI deletes its concepts asynchronously and refuses to expunge it until then
    cs_id = f"cs-{uuid.uuid4().hex[:12]}"
    cs = tag.apply({
        "resourceType": "CodeSystem", "id": cs_id, "url": f"http://milan-fhir.org/test/{cs_id}",
        "status": "active", "content": "complete", "concept": [{"code": "a"}, {"code": "b"}],
    })
    assert _put(http, hapi_base_url, cs).status_code == 201

    result = hapi.purge(hapi_base_url, tag, types=["Patient", "Observation", "Condition", "CodeSystem"])

    assert result["remaining"] == {}
    assert sorted(result["deleted"]) == ["CodeSystem", "Observation", "Patient"]
    assert result["expunge_error"] is None and result["expunged"] == 4
    assert _search(http, hapi_base_url, f"Patient?_tag={tag.token}").get("entry", []) == []
    assert http.get(f"{hapi_base_url}/Patient/{pid}", timeout=60).status_code in (404, 410)
    # expunged: not even the history is left
    for oid in obs_ids:
        assert http.get(f"{hapi_base_url}/Observation/{oid}/_history", timeout=60).status_code in (404, 410)
