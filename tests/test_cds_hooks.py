"""The CDS Hooks service under uvicorn on a loopback port, called over HTTP: discovery, the JWT rejection matrix,
hook calls with full prefetch (the card of every fixture agrees with ``milan_fhir.evaluate``), 412, feedback."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
import requests
from cryptography.hazmat.primitives import serialization

import milan_fhir
from milan_fhir._client._fetch import patient_searches
from milan_fhir._client._upload import to_transaction
from milan_fhir._service import JwtVerifier, ServiceConfig, create_app, parse_trust
from milan_fhir._cli.serve import build_config
from milan_fhir._cli import build_parser
from milan_fhir.errors import InputError
from smart_servers import CdsClientSigner, rsa_key, serve_asgi

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures").glob("*.json"))
AS_OF = dt.date(2026, 6, 30)
_TYPES = {"Observation": "observations", "Condition": "conditions", "Procedure": "procedures"}


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return CdsClientSigner(tmp_path_factory.mktemp("ehr"))


@pytest.fixture(scope="module")
def service(signer):
    """The service (trusting ``signer``), running under uvicorn; yields its base URL."""

    def make(base_url):
        verifier = JwtVerifier(parse_trust([f"{signer.issuer}={signer.jwks_file}"]))
        return create_app(ServiceConfig(milan_fhir.default_mappings(), verifier, base_url, as_of=AS_OF))

    with serve_asgi(make) as base_url:
        yield base_url


def call(base_url, signer, service_id, body, **claims):
    url = f"{base_url}/cds-services/{service_id}"
    return requests.post(url, data=orjson.dumps(body), timeout=30,
                         headers={"Authorization": f"Bearer {signer.token(url, **claims)}",
                                  "Content-Type": "application/json"})


def hook_body(patient_id, prefetch=None, **extra):
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"patientId": patient_id, "userId": "Practitioner/example"}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def prefetch_for(fixture: Path, patient: str) -> dict:
    """What an EHR would prefetch for ``patient`` from the fixture as stored on a server (references as Type/id):
    the Patient read and, per template, a searchset Bundle of the patient's resources of that type."""
    tx = to_transaction(orjson.loads(fixture.read_bytes()))
    resources = [e["resource"] for e in tx["entry"]]
    pre: dict = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in _TYPES.values()}
    pre["patient"] = {"resourceType": "OperationOutcome",
                      "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no such Patient"}]}
    for r in resources:
        if r["resourceType"] == "Patient" and f"Patient/{r['id']}" == patient:
            pre["patient"] = r
        elif r["resourceType"] in _TYPES and (r.get("subject") or {}).get("reference") == patient:
            pre[_TYPES[r["resourceType"]]]["entry"].append({"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
                                                           "search": {"mode": "match"}})
    return pre


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_lists_one_service_per_rule_set_with_the_clients_searches(service, signer):
    url = f"{service}/cds-services"
    resp = requests.get(url, headers={"Authorization": f"Bearer {signer.token(url)}"}, timeout=30)
    assert resp.status_code == 200
    services = resp.json()["services"]
    m = milan_fhir.default_mappings()
    assert [s["id"] for s in services] == list(m.rule_sets)
    assert {"milan-net", "milan-2007"} <= {s["id"] for s in services}
    expected = {rtype: u.replace("PID", "{{context.patientId}}") for rtype, u in patient_searches("PID", m)}
    for s in services:
        assert s["hook"] == "patient-view" and s["title"] and s["description"]
        pf = s["prefetch"]
        assert pf == {"patient": expected["Patient"], "conditions": expected["Condition"],
                      "observations": expected["Observation"], "procedures": expected["Procedure"]}
    obs = services[0]["prefetch"]["observations"]
    # Observations are fetched unfiltered (a Ki-67 named only by its text must be seen, criteria §1d)
    assert "code=" not in obs and "subject=Patient/{{context.patientId}}" in obs


def test_layered_rule_set_becomes_a_service(tmp_path):
    layer = tmp_path / "local.yaml"
    layer.write_text(
        'mapping_set: {name: local, version: "1"}\n'
        "rule_sets:\n"
        '  milan-net-55: {version: "1", title: Milan NET 55, source: local protocol, age_max_years: 55,\n'
        "                 low_grade_mode: ki67, ki67_limit_percent: 10, grade_ki67_cutoffs: [3, 20],\n"
        "                 liver_burden_limit_percent: 50, liver_burden_inclusive: false, stable_months: 6,\n"
        "                 status_stale_months: 6, staging_window_months: 6}\n"
    )
    args = build_parser().parse_args(["serve", "--insecure-no-auth", "--mappings", str(layer), "--as-of", "2026-06-30"])
    config = build_config(args)
    with serve_asgi(lambda base: create_app(config)) as base_url:
        ids = [s["id"] for s in requests.get(f"{base_url}/cds-services", timeout=30).json()["services"]]
        body = hook_body("v02-p2", prefetch_for(ROOT / "fixtures" / "02-age-60-vs-61.json", "Patient/v02-p2"))
        card = requests.post(f"{base_url}/cds-services/milan-net-55", json=body, timeout=30).json()["cards"][0]
    assert "milan-net-55" in ids
    assert card["extension"]["milan-fhir"]["rule_set"] == "milan-net-55"
    assert card["summary"].startswith("Outside Milan: age > 55 years")


# ---------------------------------------------------------------------------------------------- security


def _attacks(signer, url):
    """(name, Authorization header) of every JWT the service must refuse."""
    public_pem = signer.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": signer.issuer, "sub": "ehr", "aud": url, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": signer.kid})
    # HS256 "signed" with the public key: the classic key-confusion attack (PyJWT refuses to do it; done by hand)
    import base64, hashlib, hmac, json

    def b64(d: bytes) -> str:
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    hs256 = f"{head}.{body}.{sig}"
    replayed = signer.token(url)
    stranger = rsa_key()
    return [
        ("missing header", None, None),
        ("not bearer", f"Basic {b64(b'a:b')}", None),
        ("not a JWT", "Bearer abc.def", None),
        ("alg none", f"Bearer {unsigned}", None),
        ("HS256 with the public key", f"Bearer {hs256}", None),
        ("wrong aud", f"Bearer {signer.token(url + '-other')}", None),
        ("aud of the discovery URL", f"Bearer {signer.token(url.rsplit('/', 1)[0])}", None),
        ("expired", f"Bearer {signer.token(url, iat=now - 600, exp=now - 300)}", None),
        ("exp too far ahead", f"Bearer {signer.token(url, exp=now + 3600)}", None),
        ("iat in the future", f"Bearer {signer.token(url, iat=now + 600, exp=now + 700)}", None),
        ("no jti", f"Bearer {signer.token(url, jti=None)}", None),
        ("no kid", f"Bearer {jwt.encode(claims, signer.key, algorithm='RS384')}", None),
        ("unknown kid", f"Bearer {signer.token(url, headers={'kid': 'rotated-away'})}", None),
        ("unknown iss", f"Bearer {signer.token(url, iss='https://evil.example')}", None),
        ("signed by another key", f"Bearer {signer.token(url, key=stranger)}", None),
        ("RS256 not configured", f"Bearer {signer.token(url, alg='RS256')}", None),
        ("replayed jti", f"Bearer {replayed}", f"Bearer {replayed}"),
    ]


def test_every_jwt_attack_is_refused_with_401_and_no_token_in_the_logs(service, signer, caplog):
    url = f"{service}/cds-services/milan-net"
    body = orjson.dumps(hook_body("v01-p1", prefetch_for(ROOT / "fixtures" / "01-ileal-net-eligible.json", "Patient/v01-p1")))
    caplog.set_level(logging.DEBUG)
    tokens = []
    for name, header, first in _attacks(signer, url):
        if first is not None:  # the genuine first use succeeds; its replay must not
            ok = requests.post(url, data=body, headers={"Authorization": first}, timeout=30)
            assert ok.status_code == 200, name
        headers = {"Authorization": header} if header else {}
        resp = requests.post(url, data=body, headers=headers, timeout=30)
        assert resp.status_code == 401, name
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer"), name
        assert resp.json()["resourceType"] == "OperationOutcome", name
        assert "cards" not in resp.json()
        if header:
            tokens.append(header.split(" ", 1)[1])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused a call" in logged
    for t in tokens:
        for part in t.split("."):
            if len(part) > 8:
                assert part not in logged and part not in resp.text
    assert "v01-p1" not in logged  # no patient id either


def test_discovery_and_feedback_need_the_jwt_too(service, signer):
    assert requests.get(f"{service}/cds-services", timeout=30).status_code == 401
    fb = f"{service}/cds-services/milan-net/feedback"
    assert requests.post(fb, json={"feedback": []}, timeout=30).status_code == 401


def test_optional_algorithms_only_when_configured(tmp_path):
    es = CdsClientSigner(tmp_path, issuer="https://ehr2.example.org", kid="ec-1", alg="ES256")
    for allowed, want in ((("RS384", "ES384"), 401), (("RS384", "ES384", "ES256"), 200)):
        def make(base_url, allowed=allowed):
            verifier = JwtVerifier(parse_trust([f"{es.issuer}={es.jwks_file}"]), algorithms=allowed)
            return create_app(ServiceConfig(milan_fhir.default_mappings(), verifier, base_url, as_of=AS_OF))

        with serve_asgi(make) as base_url:
            url = f"{base_url}/cds-services"
            resp = requests.get(url, headers={"Authorization": f"Bearer {es.token(url)}"}, timeout=30)
        assert resp.status_code == want, allowed
    with pytest.raises(InputError, match="HS256"):
        JwtVerifier({}, algorithms=("RS384", "HS256"))


def test_serve_refuses_to_start_without_trust_and_warns_when_insecure(capsys, monkeypatch):
    from milan_fhir._cli import main

    assert main(["serve"]) == 2
    assert "--trust ISSUER=JWKS_URL_OR_FILE" in capsys.readouterr().err
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    assert main(["serve", "--insecure-no-auth", "--port", "8999"]) == 0
    assert main(["serve", "--insecure-no-auth", "--port", "8999"]) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING: --insecure-no-auth") == 2 and len(started) == 2


# ---------------------------------------------------------------------------------------------- cards


def _fixture_patients():
    out = []
    for f in FIXTURES:
        for ev in milan_fhir.evaluate(f, as_of=AS_OF):
            out.append((f, ev.patient))
    return out


@pytest.mark.parametrize("fixture,patient", _fixture_patients(), ids=lambda v: getattr(v, "stem", v))
def test_card_agrees_with_evaluate_for_every_fixture(service, signer, fixture, patient):
    (expected,) = [ev for ev in milan_fhir.evaluate(fixture, as_of=AS_OF) if ev.patient == patient]
    want = milan_fhir.to_json(expected)
    resp = call(service, signer, expected.rule_set, hook_body(patient.split("/", 1)[1], prefetch_for(fixture, patient)))
    assert resp.status_code == 200, resp.text
    (card,) = resp.json()["cards"]
    line = card["extension"]["milan-fhir"]
    assert line["verdict"] == want["verdict"] and line["as_of"] == "2026-06-30"
    for name, res in want["criteria"].items():
        got = line["criteria"][name]
        assert (got["status"], got["reason"], got["evidence"], got["missing"]) == (
            res["status"], res["reason"], res["evidence"], res["missing"]), name
        assert res["reason"].split(" (")[0].replace("|", "\\|") in card["detail"]
    assert [c["code"] for c in line["cautions"]] == [c.code for c in expected.cautions]
    for c in expected.cautions:
        assert c.code in card["detail"] and " ".join(c.reason.split())[:40] in card["detail"]
    prefix = {"eligible": "Within Milan criteria", "ineligible": "Outside Milan", "indeterminate": "Milan undecided"}
    assert card["summary"].startswith(prefix[want["verdict"]]) and len(card["summary"]) <= 140
    assert card["indicator"] == ("info" if want["verdict"] == "eligible" and not expected.cautions else "warning")
    assert "2026-06-30" in card["detail"]
    assert expected.rule_set in card["source"]["label"] and expected.rule_set_version in card["source"]["label"]
    assert "Mazzaferro" in card["source"]["topic"]["display"]


def test_summaries_read_in_five_seconds(service, signer):
    def summary(fixture, patient):
        body = hook_body(patient.split("/")[1], prefetch_for(ROOT / "fixtures" / fixture, patient))
        return call(service, signer, "milan-net", body).json()["cards"][0]["summary"]

    assert summary("01-ileal-net-eligible.json", "Patient/v01-p1") == "Within Milan criteria (milan-net 1.0.0)"
    assert summary("02-age-60-vs-61.json", "Patient/v02-p2") == "Outside Milan: age > 60 years"
    undecided = summary("17-no-primary-recorded.json", "Patient/v17-p1")
    assert undecided.startswith("Milan undecided: ") and "primary resection" in undecided and "missing" in undecided


# ---------------------------------------------------------------------------------------------- prefetch


def test_no_prefetch_and_no_fhir_server_is_412(service, signer):
    resp = call(service, signer, "milan-net", hook_body("v01-p1"))
    assert resp.status_code == 412
    oo = resp.json()
    assert oo["resourceType"] == "OperationOutcome" and "fhirServer" in oo["issue"][0]["diagnostics"]


@pytest.mark.parametrize("failed", [None, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}])
def test_prefetch_null_or_outcome_counts_as_missing(service, signer, failed):
    pre = prefetch_for(ROOT / "fixtures" / "01-ileal-net-eligible.json", "Patient/v01-p1")
    pre["observations"] = failed  # the EHR could not prefetch them: never read as "no observations"
    resp = call(service, signer, "milan-net", hook_body("v01-p1", pre))
    assert resp.status_code == 412 and "observations" in resp.json()["issue"][0]["diagnostics"]


def test_incomplete_prefetch_page_is_not_evaluated_alone(service, signer):
    pre = prefetch_for(ROOT / "fixtures" / "01-ileal-net-eligible.json", "Patient/v01-p1")
    pre["observations"]["link"] = [{"relation": "next", "url": "http://ehr.example/fhir?page=2"}]
    resp = call(service, signer, "milan-net", hook_body("v01-p1", pre))
    assert resp.status_code == 412 and "further pages" in resp.json()["issue"][0]["diagnostics"]


def test_bad_requests_are_400_without_echoing_data(service, signer):
    for body in ({"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p"}},
                 {"hook": "patient-view", "hookInstance": "x", "context": {}},
                 {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "a/b"}},
                 {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p"},
                  "fhirAuthorization": {"access_token": "secret-token"}}):
        resp = call(service, signer, "milan-net", body)
        assert resp.status_code == 400, body
        assert resp.json()["resourceType"] == "OperationOutcome" and "secret-token" not in resp.text
    assert call(service, signer, "no-such-rule-set", hook_body("p", {})).status_code == 404


def test_feedback_is_accepted_and_logged_without_phi(service, signer, caplog):
    caplog.set_level(logging.INFO)
    url = f"{service}/cds-services/milan-net/feedback"
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "overrideReasons": [{"reason": {"code": "x"}, "userComment": "Patient v01-p1 seen by Dr X"}],
                          "outcomeTimestamp": "2026-06-30T10:00:00Z"}]}
    resp = requests.post(url, json=body, headers={"Authorization": f"Bearer {signer.token(url)}"}, timeout=30)
    assert resp.status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "feedback for milan-net: overridden 1" in logged
    assert "v01-p1" not in logged and "Dr X" not in logged


def test_cors_for_browser_ehrs(signer):
    def make(base_url):
        verifier = JwtVerifier(parse_trust([f"{signer.issuer}={signer.jwks_file}"]))
        return create_app(ServiceConfig(milan_fhir.default_mappings(), verifier, base_url, as_of=AS_OF,
                                        cors_origins=["https://ehr.example.org"]))

    with serve_asgi(make) as base_url:
        pre = requests.options(f"{base_url}/cds-services/milan-net", timeout=30, headers={
            "Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        other = requests.options(f"{base_url}/cds-services/milan-net", timeout=30, headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers


def test_jwks_by_url_follows_key_rotation(tmp_path):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    old = CdsClientSigner(tmp_path, kid="2025-key")
    new = CdsClientSigner(tmp_path, kid="2026-key")
    published = {"keys": json.loads(old.jwks_file.read_text())["keys"]}

    class Jwks(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = json.dumps(published).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    jwks_url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    try:
        def make(base_url):
            verifier = JwtVerifier(parse_trust([f"{old.issuer}={jwks_url}"]))
            # PyJWT re-reads a JWKS for an unknown kid at most every 30 s (no refetch storm); not in a test
            verifier.issuers[old.issuer]._client.cooldown_duration = 0
            return create_app(ServiceConfig(milan_fhir.default_mappings(), verifier, base_url, as_of=AS_OF))

        with serve_asgi(make) as base_url:
            url = f"{base_url}/cds-services"
            get = lambda s: requests.get(url, headers={"Authorization": f"Bearer {s.token(url)}"}, timeout=30)
            assert get(old).status_code == 200
            assert get(new).status_code == 401  # not published yet
            published["keys"].append(json.loads(new.jwks_file.read_text())["keys"][0])
            assert get(new).status_code == 200  # the JWKS is read again for a kid it did not know
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_unexpected_failure_is_500_without_a_traceback_in_the_log(signer, caplog, monkeypatch):
    import milan_fhir._service._app as app_module

    def boom(*a, **k):
        raise RuntimeError("Patient/v01-p1 secret detail")

    monkeypatch.setattr(app_module, "evaluate_hook", boom)

    def make(base_url):
        config = ServiceConfig(milan_fhir.default_mappings(), None, base_url, as_of=AS_OF, insecure_no_auth=True)
        return create_app(config)

    caplog.set_level(logging.INFO)
    with serve_asgi(make) as base_url:
        resp = requests.post(f"{base_url}/cds-services/milan-net", json=hook_body("v01-p1", {}), timeout=30)
    assert resp.status_code == 500 and resp.json()["resourceType"] == "OperationOutcome"
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "RuntimeError" in logged and "secret detail" not in logged and "v01-p1" not in logged


def test_cautions_are_in_summary_detail_and_extension():
    from milan_fhir._domain import Caution, Source, Verdict
    from milan_fhir._service._cards import card

    (ev,) = milan_fhir.evaluate(ROOT / "fixtures" / "01-ileal-net-eligible.json", as_of=AS_OF)
    rules = milan_fhir.default_mappings().rule_set(ev.rule_set)
    dead = Caution(code="deceased", reason="Patient.deceasedDateTime 2026-05-01 (Patient/v01-p1) is on or before 2026-06-30.",
                   evidence=(Source(reference="Patient/v01-p1"),))
    other = Caution(code="other-malignancy", reason="Active breast carcinoma (Condition/c9, 2025-01-01).",
                    evidence=(Source(reference="Condition/c9"),))
    outside = card(ev.model_copy(update={"cautions": (dead,), "verdict": Verdict.INELIGIBLE}), rules, software="x")
    assert outside["summary"] == "Outside Milan: deceased (caution)" and outside["indicator"] == "warning"
    assert "deceasedDateTime 2026-05-01" in outside["detail"] and "Evidence: Patient/v01-p1." in outside["detail"]
    undecided = card(ev.model_copy(update={"cautions": (other,), "verdict": Verdict.INDETERMINATE}), rules, software="x")
    assert undecided["summary"] == "Milan undecided: other active malignancy (caution)"
    assert [c["code"] for c in undecided["extension"]["milan-fhir"]["cautions"]] == ["other-malignancy"]
    assert undecided["extension"]["milan-fhir"]["cautions"][0]["evidence"] == ["Condition/c9"]
    plain = card(ev, rules, software="x")
    assert plain["indicator"] == "info" and plain["extension"]["milan-fhir"]["cautions"] == []
