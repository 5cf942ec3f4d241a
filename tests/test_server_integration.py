"""milan-fhir against a real HAPI FHIR JPA server: upload, evaluate, write back, conflicts, races and faults.

Uses the session fixtures ``hapi_base_url`` and ``fhir_run_tag`` (tests/conftest.py): everything written here
carries the run tag and is purged at session end. Patients that a test changes are private copies of a
fixture, with ids prefixed per test, so tests never disturb each other.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import signal
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import hapi
import milan_fhir
from milan_fhir._cli import main
from milan_fhir._client import (
    FhirClient,
    evaluate_on_server,
    find_current,
    upload_bundle,
    upload_definitions,
    validate_resource,
)
from milan_fhir._client._upload import read_bundle
from milan_fhir._client._writeback import write_back as low_level_write_back
from milan_fhir._writers import fhir as fhir_writer
from milan_fhir.errors import FhirConflictError, FhirConnectionError

pytestmark = pytest.mark.hapi

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
AS_OF = "2026-06-30"
#: vignettes a server with referential integrity must refuse: data about a Patient that does not exist (33), links
#: to a Condition that is not in the data (42, 58: such a link counts as no link, criteria §1a)
REFUSABLE = {"33-patient-resource-missing.json", "42-breast-cancer-ki67.json", "58-resection-reasons.json"}


@pytest.fixture(autouse=True)
def _retries_from_arguments(monkeypatch):
    monkeypatch.delenv("MILAN_FHIR_RETRIES", raising=False)


@pytest.fixture
def tag(fhir_run_tag):
    return (fhir_run_tag.system, fhir_run_tag.code)


@pytest.fixture
def client(hapi_base_url):
    with FhirClient(hapi_base_url, retries=2, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def uploaded(hapi_base_url, fhir_run_tag):
    """Every fixture Bundle uploaded once (tagged), and the project's definitions: {file name: Bundle}."""
    t = (fhir_run_tag.system, fhir_run_tag.code)
    done, refused = {}, {}
    with FhirClient(hapi_base_url, retries=2, timeout=120) as c:
        upload_definitions(c, tag=t)
        for f in sorted(FIXTURES.glob("*.json")):
            bundle = read_bundle(f)
            try:
                upload_bundle(c, bundle, tag=t, file=str(f))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
                refused[f.name] = exc
                continue
            done[f.name] = bundle
    assert set(refused) <= REFUSABLE, {k: str(v) for k, v in refused.items()}
    return done


def private_patient(client: FhirClient, tag, name: str = "01-ileal-net-eligible.json") -> str:
    """A private copy of a fixture patient (every id prefixed), uploaded; returns its Patient id."""
    bundle = read_bundle(FIXTURES / name)
    prefix = "t" + uuid.uuid4().hex[:10]
    ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            for k, v in list(node.items()):
                if k == "reference" and isinstance(v, str):
                    ref = v.split("/fhir/")[-1]
                    if ref in ids:
                        rtype, rid = ref.split("/", 1)
                        node[k] = f"{rtype}/{prefix}-{rid}"
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)
        return node

    out = {"resourceType": "Bundle", "type": "collection", "entry": []}
    first_patient = None
    for e in bundle["entry"]:
        res = fix(copy.deepcopy(e["resource"]))
        res["id"] = f"{prefix}-{res['id']}"
        if res["resourceType"] == "Patient" and first_patient is None:
            first_patient = res["id"]
        out["entry"].append({"resource": res})
    upload_bundle(client, out, tag=tag)
    assert first_patient
    return first_patient


def ra_count(client: FhirClient, patient: str, rule_set: str = "milan-net") -> int:
    value = fhir_writer.identifier_value(f"Patient/{patient}", rule_set)
    return len(list(client.search("RiskAssessment", {"identifier": f"{fhir_writer.IDENTIFIER_SYSTEM}|{value}"})))


def provenances(client: FhirClient, ra_id: str) -> list[dict]:
    return list(client.search("Provenance", {"target": f"RiskAssessment/{ra_id}"}))


def history_count(client: FhirClient, ra_id: str) -> int:
    return len(client.json("GET", f"RiskAssessment/{ra_id}/_history").get("entry") or [])


def comparable(ev) -> dict:
    """Verdict and every criterion's status and evidence references (versions differ between file and server)."""
    return {
        "verdict": str(ev.verdict),
        "criteria": {
            name: (str(r.status), sorted(s.reference for s in r.evidence)) for name, r in sorted(ev.criteria.items())
        },
    }


def add_ki67(client: FhirClient, patient: str, tag, percent: float) -> None:
    obs = {
        "resourceType": "Observation",
        "id": f"{patient}-ki67-extra",
        "meta": {"tag": [{"system": tag[0], "code": tag[1]}]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-06-01",
        "valueQuantity": {"value": percent, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }
    client.json("PUT", f"Observation/{obs['id']}", body=obs)


# ------------------------------------------------------------------------------------------------ upload + read


def test_evaluate_via_server_equals_evaluate_from_files(uploaded, hapi_base_url):
    checked = 0
    with FhirClient(hapi_base_url, retries=2) as c:
        for name in sorted(uploaded):
            for ev_file in milan_fhir.evaluate(FIXTURES / name, as_of=AS_OF):
                pid = ev_file.patient.split("/", 1)[1]
                ev_server = milan_fhir.evaluate_patient(c, pid, as_of=AS_OF)
                assert comparable(ev_server) == comparable(ev_file), f"{name} {ev_file.patient}"
                checked += 1
    assert checked >= 60


def test_upload_command_and_server_evaluate_command(hapi_base_url, fhir_run_tag, capsys, tmp_path):
    bundle = read_bundle(FIXTURES / "02-age-60-vs-61.json")
    f = tmp_path / "one.json"
    f.write_text(json.dumps(bundle))
    code = main(["upload", str(f), "--server", hapi_base_url, "--tag", fhir_run_tag.token])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "20 resources written" in err
    code = main(["evaluate", "--server", hapi_base_url, "--patient", "v02-p1", "--patient", "Patient/v02-p2",
                 "--as-of", AS_OF, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    verdicts = {json.loads(line)["patient"]: json.loads(line)["verdict"] for line in out.splitlines()}
    assert verdicts == {"Patient/v02-p1": "eligible", "Patient/v02-p2": "ineligible"}


def test_unknown_patient_is_a_warning_and_exit_2(hapi_base_url, capsys):
    code = main(["evaluate", "--server", hapi_base_url, "--patient", f"nobody-{uuid.uuid4().hex[:8]}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "has no Patient nobody-" in err and "Traceback" not in err


def test_all_patients_lists_every_uploaded_patient_whatever_its_codes(uploaded, hapi_base_url):
    """Finding: --all-patients searched dotted ICD-10-CM codes only, so v30-p1 (coded C7A012) was never screened."""
    from milan_fhir._client import list_patients

    uploaded_ids = {e["resource"]["id"] for b in uploaded.values() for e in b["entry"]
                    if e["resource"]["resourceType"] == "Patient"}
    with FhirClient(hapi_base_url, retries=2) as c:
        sel = list_patients(c)
    assert uploaded_ids <= set(sel.ids)
    assert {"v30-p1", "v17-p1", "v01-p1"} <= set(sel.ids)
    assert sel.server_total is not None and sel.complete  # HAPI counts; the listing matches the count


def test_cli_all_patients_screens_the_icd_without_dot_vignette(uploaded, hapi_base_url, capsys):
    code = main(["evaluate", "--server", hapi_base_url, "--all-patients", "--as-of", AS_OF, "--format", "json"])
    out, err = capsys.readouterr()
    lines = {json.loads(x)["patient"]: json.loads(x) for x in out.splitlines()}
    assert lines["Patient/v30-p1"]["verdict"] == "eligible"
    assert "patient(s) on the server" in err and f"{len(lines)} screened" in err
    assert code in (0, 2)  # 2 only when another session's patient could not be read (shared server)


def test_read_budget_two_requests_and_one_write(hapi_base_url, client, tag):
    pid = private_patient(client, tag)
    with FhirClient(hapi_base_url, retries=0) as fresh:  # nothing cached yet
        result = evaluate_on_server(fresh, pid, as_of=AS_OF, write=True, tag=tag)
    assert result.fetch.strategy == "batch"
    assert result.fetch.requests <= 2
    assert result.written.action == "created"
    assert result.written.requests == 1


# ------------------------------------------------------------------------------------------------ write-back


def test_write_back_once_then_unchanged_writes_nothing(client, tag):
    pid = private_patient(client, tag)
    first = evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    assert first.written.action == "created"
    assert ra_count(client, pid) == 1
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    assert len(provenances(client, ra["id"])) == 1
    version, history = ra["meta"]["versionId"], history_count(client, ra["id"])

    again = evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    assert again.written.action == "unchanged"
    assert again.written.requests == 0
    after = find_current(client, f"Patient/{pid}", "milan-net")
    assert ra_count(client, pid) == 1
    assert after["meta"]["versionId"] == version
    assert history_count(client, ra["id"]) == history
    assert len(provenances(client, ra["id"])) == 1


def test_changed_input_writes_a_new_version_of_the_same_assessment(client, tag):
    pid = private_patient(client, tag)
    first = evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    assert str(first.evaluation.verdict) == "eligible"
    add_ki67(client, pid, tag, 14.0)  # now above the 10 % limit
    second = evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    assert str(second.evaluation.verdict) == "ineligible"
    assert second.written.action == "updated"
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    assert ra_count(client, pid) == 1
    assert ra["id"] == first.written.risk_assessment.split("/")[1]
    assert ra["meta"]["versionId"] == "2"
    assert ra["prediction"][0]["outcome"]["coding"][0]["code"] == "ineligible"
    provs = provenances(client, ra["id"])
    assert len(provs) == 2
    assert any(f"Observation/{pid}-ki67-extra" in json.dumps(p) for p in provs)


def test_validate_our_risk_assessment_against_the_uploaded_profile(uploaded, client, tag):
    pid = private_patient(client, tag)
    evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    issues = validate_resource(client, ra, profile=fhir_writer.PROFILE_URL)
    errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
    assert errors == []
    broken = {k: v for k, v in ra.items() if k != "status"}  # status is required: the server must say so
    assert any(i.get("severity") in ("error", "fatal") for i in validate_resource(client, broken))


def test_412_on_a_conflicting_update_is_reread_and_retried(client, tag):
    pid = private_patient(client, tag)
    evaluate_on_server(client, pid, as_of=AS_OF, write=True, tag=tag)
    stale = find_current(client, f"Patient/{pid}", "milan-net")
    # another writer updates the assessment behind our back (version 2)
    theirs = copy.deepcopy(stale)
    for ext in theirs["extension"]:
        if ext["url"] == fhir_writer.INPUT_FINGERPRINT_URL:
            ext["valueString"] = "sha256:another-writer"
    client.json("PUT", f"RiskAssessment/{stale['id']}", body=theirs)
    # a version-aware update from the stale version is refused by the server ...
    with pytest.raises(FhirConflictError) as err:
        client.transaction(
            [{"resource": stale, "request": {"method": "PUT", "url": f"RiskAssessment/{stale['id']}", "ifMatch": 'W/"1"'}}]
        )
    assert err.value.status in (409, 412)
    # ... and write-back, starting from the stale read, re-reads and writes on top of version 2
    add_ki67(client, pid, tag, 14.0)
    ev = milan_fhir.evaluate_patient(client, pid, as_of=AS_OF)
    result = low_level_write_back(client, ev, milan_fhir.default_mappings(), current=stale, tag=tag)
    assert result.action == "updated"
    assert result.attempts == 2
    now = find_current(client, f"Patient/{pid}", "milan-net")
    assert now["meta"]["versionId"] == "3"
    assert fhir_writer.read_fingerprint(now) == result.fingerprint
    assert ra_count(client, pid) == 1


def test_three_concurrent_evaluations_leave_one_assessment(hapi_base_url, client, tag):
    pid = private_patient(client, tag)
    results, errors = [], []

    def run():
        try:
            with FhirClient(hapi_base_url, retries=2) as c:
                results.append(evaluate_on_server(c, pid, as_of=AS_OF, write=True, tag=tag).written)
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(results) == 3
    assert ra_count(client, pid) == 1
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    assert {r.fingerprint for r in results} == {fhir_writer.read_fingerprint(ra)}
    assert sum(r.action == "created" for r in results) >= 1
    # every version written has its Provenance; no Provenance without an assessment
    provs = provenances(client, ra["id"])
    assert 1 <= len(provs) <= int(ra["meta"]["versionId"])


# ------------------------------------------------------------------------------------------------ fault proxy


class FaultProxy:
    """A loopback HTTP proxy in front of the FHIR server. ``faults`` is consumed one per request:
    ``"503"`` answers 503 with Retry-After: 1, ``"drop"`` closes the connection without answering,
    ``"drop-after"`` forwards the request and then drops the answer, ``None`` forwards."""

    def __init__(self, upstream: str, faults: list[str | None]):
        self.upstream = urlsplit(upstream)
        self.faults = list(faults)
        self.log: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                    proxy.log.append((self.command, self.path.split("?")[0], fault or "pass"))
                if fault == "503":
                    data = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"proxy: try later"}]}'
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fault == "drop-after":  # the server acted; the client never hears of it
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}{self.upstream.path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(hapi_base_url):
    made = []

    def make(faults):
        p = FaultProxy(hapi_base_url, faults)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_proxy_503_with_retry_after_is_retried(proxy, client, tag):
    pid = private_patient(client, tag)
    p = proxy(["503", "503"])  # metadata refused twice, then everything passes
    with FhirClient(p.base_url, retries=3) as c:
        result = evaluate_on_server(c, pid, as_of=AS_OF, write=True, tag=tag)
    assert result.written.action == "created"
    assert [f for _, _, f in p.log[:3]] == ["503", "503", "pass"]
    assert ra_count(client, pid) == 1


def test_proxy_dropped_connection_on_a_read_is_retried(proxy, client, tag):
    pid = private_patient(client, tag)
    p = proxy([None, "drop"])  # metadata passes, the read batch is dropped once
    with FhirClient(p.base_url, retries=2) as c:
        ev = milan_fhir.evaluate_patient(c, pid, as_of=AS_OF)
    assert str(ev.verdict) == "eligible"
    assert [(m, f) for m, _, f in p.log[:3]] == [("GET", "pass"), ("POST", "drop"), ("POST", "pass")]


def test_proxy_answer_lost_after_the_write_leaves_one_version(proxy, client, tag):
    """The write transaction reaches the server, but its answer is lost: the retry must not write twice."""
    pid = private_patient(client, tag)
    p = proxy([None, None, "drop-after"])  # metadata, read batch, then the write transaction's answer dropped
    with FhirClient(p.base_url, retries=2) as c:
        result = evaluate_on_server(c, pid, as_of=AS_OF, write=True, tag=tag)
    assert [f for _, _, f in p.log[:4]] == ["pass", "pass", "drop-after", "pass"]
    assert ra_count(client, pid) == 1
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    assert fhir_writer.read_fingerprint(ra) == result.written.fingerprint
    assert len(provenances(client, ra["id"])) == 1  # the resent transaction re-wrote the same Provenance id


def test_proxy_always_503_gives_a_clear_error_and_writes_nothing(proxy, client, tag):
    pid = private_patient(client, tag)
    with FhirClient(client.base_url, retries=0) as direct:
        ev = milan_fhir.evaluate_patient(direct, pid, as_of=AS_OF)
    p = proxy(["503"] * 10)
    with FhirClient(p.base_url, retries=1) as c, pytest.raises(FhirConnectionError) as err:
        low_level_write_back(c, ev, milan_fhir.default_mappings(), tag=tag)
    assert "unavailable" in str(err.value) and "proxy: try later" in str(err.value)
    assert len(p.log) == 2  # the first try and one retry
    assert ra_count(client, pid) == 0


# ------------------------------------------------------------------------------------------------ server stopped


@pytest.fixture(scope="module")
def own_server(hapi_base_url):
    """A separate, short-lived HAPI process (this module stops it; the shared one is never touched)."""
    if os.environ.get("MILAN_FHIR_BASE_URL"):
        pytest.skip("MILAN_FHIR_BASE_URL points at an external server: no local server to stop")
    try:
        hapi.build_jar()
        server = hapi.LocalHapiServer()
        server.start()
    except hapi.HapiUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"second HAPI server unavailable: {exc}")
        pytest.skip(f"second HAPI server unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


def test_server_stopped_mid_run(own_server, tag):
    base = own_server.base_url
    with FhirClient(base, retries=2) as c:
        done = private_patient(c, tag)
        evaluate_on_server(c, done, as_of=AS_OF, write=True, tag=tag)
        pid = private_patient(c, tag)
        ev = milan_fhir.evaluate_patient(c, pid, as_of=AS_OF)  # read while the server runs
    proc = own_server.process
    assert proc is not None
    # the server freezes mid-run: the write times out with a clear message
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with FhirClient(base, retries=1, timeout=3) as c, pytest.raises(FhirConnectionError) as err:
            low_level_write_back(c, ev, milan_fhir.default_mappings(), current=None, tag=tag)
        assert "did not answer" in str(err.value) and base in str(err.value)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # nothing half-written: every assessment on the server has its Provenance, and at most one per patient
    with FhirClient(base, retries=2, timeout=60) as c:
        for patient in (done, pid):
            n = ra_count(c, patient)
            assert n <= 1
            if n:
                ra = find_current(c, f"Patient/{patient}", "milan-net")
                assert len(provenances(c, ra["id"])) >= 1
        assert ra_count(c, done) == 1
    # the server stops for good: a clear connection error, no traceback-worthy surprise
    own_server.stop()
    with FhirClient(base, retries=1) as c, pytest.raises(FhirConnectionError) as err:
        milan_fhir.evaluate_patient(c, pid, as_of=AS_OF)
    assert "cannot reach the FHIR server" in str(err.value)
    assert "connection refused" in str(err.value)


# ------------------------------------------------------------------------------------------------ first-create race


def _variant(ev, i: int):
    """The same evaluation with one more input version: another fingerprint, as a writer with other inputs (the
    fingerprint covers inputs and the result, not reason texts, criteria.md §5 v2)."""
    inputs = dict(ev.inputs)
    inputs[ev.patient] = f"{100 + i}"  # another version of an input that exists (HAPI checks references)
    return ev.model_copy(update={"inputs": inputs})


def test_local_hapi_ignores_if_none_match_on_put(client, tag):
    """What the local HAPI does with the two race-free create preconditions (docs/server.md says so): it
    ignores ``If-None-Match: *`` on a PUT (the second create becomes version 2), while a conditional create
    (``If-None-Exist``) finds the first. Should HAPI start honouring If-None-Match, this test fails: then the
    write-back gets race-free first creates on HAPI for free, and the docs need a line less."""
    pid = private_patient(client, tag)
    rid = f"t{uuid.uuid4().hex[:12]}"
    meta = {"tag": [{"system": tag[0], "code": tag[1]}]}

    def ra(status: str) -> dict:
        return {"resourceType": "RiskAssessment", "id": rid, "meta": meta, "status": status,
                "subject": {"reference": f"Patient/{pid}"},
                "identifier": [{"system": "urn:test", "value": rid}]}

    first = client.json("PUT", f"RiskAssessment/{rid}", body=ra("final"), headers={"If-None-Match": "*"})
    second = client.json("PUT", f"RiskAssessment/{rid}", body=ra("preliminary"), headers={"If-None-Match": "*"})
    assert (first["meta"]["versionId"], second["meta"]["versionId"]) == ("1", "2")
    body = dict(ra("final"))
    del body["id"]
    created = client.json("POST", "RiskAssessment", body=body, headers={"If-None-Exist": f"identifier=urn:test|{rid}"})
    assert created["id"] == rid  # found the existing one, created nothing


def test_concurrent_first_writers_with_different_inputs_each_leave_a_version_with_its_own_provenance(
    hapi_base_url, client, tag
):
    """Finding: a first write was a PUT at a fixed id without a precondition; a second first writer with other
    inputs overwrote it, both reported 'created' and the current version had no Provenance. Now, whatever the
    interleaving: every writer's result names a version holding its own fingerprint, that version has exactly
    one Provenance naming it, and no Provenance names a version that is not its writer's."""
    from milan_fhir._mappings import default_mappings

    pid = private_patient(client, tag)

    m = default_mappings()
    with FhirClient(hapi_base_url, retries=2) as c:
        base = evaluate_on_server(c, pid, as_of=AS_OF).evaluation
    writers = 4
    barrier = threading.Barrier(writers)
    results, errors = [], []

    def run(i: int) -> None:
        try:
            with FhirClient(hapi_base_url, retries=2) as c:
                ev = _variant(base, i)
                barrier.wait(timeout=60)
                # current=None: each writer read "no assessment yet" before any of them wrote (a stale read)
                results.append((i, low_level_write_back(c, ev, m, current=None, tag=tag)))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert errors == [] and len(results) == writers
    ra = find_current(client, f"Patient/{pid}", "milan-net")
    assert ra_count(client, pid) == 1
    history = {e["resource"]["meta"]["versionId"]: e["resource"]
               for e in client.json("GET", f"RiskAssessment/{ra['id']}/_history").get("entry") or []}
    # HAPI strips the version from stored references (Provenance.target reads RiskAssessment/id): a Provenance is
    # tied to its version by its deterministic id, hash of (assessment, version, fingerprint)
    from milan_fhir._client._writeback import _provenance_id

    provs = {p["id"]: p for p in provenances(client, ra["id"])}
    expected = {_provenance_id(ra["id"], v, fhir_writer.read_fingerprint(r)): v for v, r in history.items()}
    for i, res in results:
        version = res.risk_assessment.rsplit("/", 1)[-1]
        assert fhir_writer.read_fingerprint(history[version]) == res.fingerprint, f"writer {i}: not its content"
        assert res.provenance and res.provenance.split("/")[1] == _provenance_id(ra["id"], version, res.fingerprint)
        assert res.provenance.split("/")[1] in provs, f"writer {i}: its version has no Provenance"
    stray = set(provs) - set(expected)
    assert not stray, f"Provenances naming a version that is not their writer's: {stray}"
    current = _provenance_id(ra["id"], ra["meta"]["versionId"], fhir_writer.read_fingerprint(ra))
    assert current in provs, "the current version has no Provenance"
    assert sum(r.action == "created" and r.note is None for _, r in results) <= 1


def test_a_stale_first_writer_on_hapi_is_detected_and_its_provenance_moved_onto_its_version(hapi_base_url, client, tag):
    """The sequential form of the race: B read "no assessment" before A created it, and writes after. HAPI
    ignores If-None-Match, so B's create lands as version 2: detected, reported in the note, and B's Provenance
    names version 2 (the one first written for version 1 is deleted); A's version 1 keeps A's Provenance."""
    from milan_fhir._client._writeback import _provenance_id
    from milan_fhir._mappings import default_mappings

    m = default_mappings()
    pid = private_patient(client, tag)
    with FhirClient(hapi_base_url, retries=2) as c:
        base = evaluate_on_server(c, pid, as_of=AS_OF).evaluation
        a = low_level_write_back(c, _variant(base, 1), m, current=None, tag=tag)
        b = low_level_write_back(c, _variant(base, 2), m, current=None, tag=tag)
    assert a.action == "created" and a.note is None and a.risk_assessment.endswith("/_history/1")
    assert b.note and "another writer created" in b.note and b.risk_assessment.endswith("/_history/2")
    ra_id = a.risk_assessment.split("/")[1]
    provs = {p["id"] for p in provenances(client, ra_id)}
    assert provs == {_provenance_id(ra_id, "1", a.fingerprint), _provenance_id(ra_id, "2", b.fingerprint)}
    assert b.provenance.split("/")[1] == _provenance_id(ra_id, "2", b.fingerprint)
