"""SMART Backend Services client against a real OAuth 2.0 authorization server (Authlib, private_key_jwt) and a
FHIR-ish server that requires its tokens; including tokens that expire during a Bulk Data $export download."""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
import requests

import milan_fhir
from milan_fhir import FhirClient, SmartBackendAuth
from milan_fhir._cli import main
from milan_fhir._cohort._export import bulk_export
from milan_fhir.errors import FhirAuthError, InputError
from smart_servers import AuthServer, ProtectedFhirServer, ec_key, pem, public_jwk, rsa_key

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "01-ileal-net-eligible.json"
AS_OF = "2026-06-30"


def fixture_resources(path: Path = FIXTURE) -> list[dict]:
    bundle = orjson.loads(path.read_bytes())
    return [e["resource"] for e in bundle["entry"]]


@pytest.fixture
def rsa_client(tmp_path):
    key = rsa_key()
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(pem(key))
    return key, key_file


def test_token_from_discovery_signed_rs384_with_kid_and_v2_scopes(rsa_client):
    key, key_file = rsa_client
    with AuthServer() as auth, ProtectedFhirServer(auth, fixture_resources()) as fhir:
        smart = SmartBackendAuth("milan-fhir-test", key_file, fhir_base_url=fhir.base_url)
        auth.register("milan-fhir-test", smart.public_jwks())
        with FhirClient(fhir.base_url, auth=smart, retries=0) as client:
            ev = milan_fhir.evaluate_patient(client, "v01-p1", as_of=AS_OF)
        assert smart.token_url == auth.token_url  # from .well-known/smart-configuration
        assert smart.scopes == [f"system/{t}.rs" for t in ("Patient", "Condition", "Observation", "Procedure")]
        header = auth.assertion_headers[0]
        assert header["alg"] == "RS384" and header["kid"] == smart.kid and header["typ"] == "JWT"
        assert smart.public_jwks()["keys"][0]["kid"] == smart.kid and "d" not in smart.public_jwks()["keys"][0]
        assert smart.tokens_obtained == 1 and len(auth.issued) == 1  # one token for all requests
        assert auth.issued[0]["scope"] == " ".join(smart.scopes)
        assert all(s == 200 for s in fhir.statuses("/fhir/"))
    (expected,) = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)
    assert milan_fhir.to_json(ev)["criteria"] == milan_fhir.to_json(expected)["criteria"]
    assert ev.verdict == expected.verdict


def test_assertion_claims_are_one_time_and_short_lived(rsa_client):
    key, key_file = rsa_client
    smart = SmartBackendAuth("c1", key_file, token_url="https://as.example/token")
    smart.configuration()
    a, b = smart.client_assertion(), smart.client_assertion()
    ca = jwt.decode(a, key.public_key(), algorithms=["RS384"], audience="https://as.example/token")
    cb = jwt.decode(b, key.public_key(), algorithms=["RS384"], audience="https://as.example/token")
    assert ca["iss"] == ca["sub"] == "c1"
    assert ca["jti"] != cb["jti"]
    assert 0 < ca["exp"] - ca["iat"] <= 300


def test_ec_p384_key_signs_es384_and_v1_scopes_with_token_url_fallback(tmp_path):
    key = ec_key()
    jwk_file = tmp_path / "client.jwk.json"
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    private["kid"] = "ec-key-7"
    jwk_file.write_text(json.dumps(private))
    with AuthServer(v2=False) as auth, ProtectedFhirServer(auth, fixture_resources(), advertise=False) as fhir:
        smart = SmartBackendAuth("ec-client", jwk_file, fhir_base_url=fhir.base_url, token_url=auth.token_url)
        auth.register("ec-client", {"keys": [public_jwk(key, "ec-key-7", "ES384")]})
        with FhirClient(fhir.base_url, auth=smart, retries=0) as client:
            assert client.read("Patient", "v01-p1")["id"] == "v01-p1"
        assert smart.alg == "ES384" and smart.kid == "ec-key-7"
        assert auth.assertion_headers[0]["alg"] == "ES384"
        assert smart.scopes == [f"system/{t}.read" for t in ("Patient", "Condition", "Observation", "Procedure")]


def test_unregistered_key_is_refused_with_a_clear_error(rsa_client, caplog):
    _, key_file = rsa_client
    other = rsa_key()
    with AuthServer() as auth, ProtectedFhirServer(auth, fixture_resources()) as fhir:
        auth.register("milan-fhir-test", {"keys": [public_jwk(other, "someone-else", "RS384")]})
        smart = SmartBackendAuth("milan-fhir-test", key_file, fhir_base_url=fhir.base_url)
        with FhirClient(fhir.base_url, auth=smart, retries=0) as client:
            with pytest.raises(FhirAuthError) as exc:
                client.read("Patient", "v01-p1")
        assert "refused client 'milan-fhir-test'" in str(exc.value) and smart.kid in str(exc.value)
        assert auth.refused and not auth.issued
        assert [p for _, p, _ in fhir.log] == ["/fhir/.well-known/smart-configuration"]  # nothing sent tokenless


def test_the_authorization_server_refuses_replayed_and_expired_assertions(rsa_client):
    key, key_file = rsa_client
    with AuthServer() as auth:
        smart = SmartBackendAuth("c1", key_file, token_url=auth.token_url)
        auth.register("c1", smart.public_jwks())
        smart.configuration()
        assertion = smart.client_assertion()
        form = {"grant_type": "client_credentials", "scope": "system/Patient.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}
        assert requests.post(auth.token_url, data=form, timeout=10).status_code == 200
        replay = requests.post(auth.token_url, data=form, timeout=10)
        assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
        now = int(time.time())
        expired = jwt.encode({"iss": "c1", "sub": "c1", "aud": auth.token_url, "iat": now - 900, "exp": now - 600,
                              "jti": uuid.uuid4().hex}, key, algorithm="RS384", headers={"kid": smart.kid})
        late = requests.post(auth.token_url, data={**form, "client_assertion": expired}, timeout=10)
        assert late.status_code in (400, 401)
        wrong_aud = jwt.encode({"iss": "c1", "sub": "c1", "aud": "https://elsewhere/token", "iat": now, "exp": now + 60,
                                "jti": uuid.uuid4().hex}, key, algorithm="RS384", headers={"kid": smart.kid})
        assert requests.post(auth.token_url, data={**form, "client_assertion": wrong_aud}, timeout=10).status_code in (400, 401)
        assert len(auth.issued) == 1


def test_no_token_endpoint_anywhere_is_a_clear_error(rsa_client):
    _, key_file = rsa_client
    with AuthServer() as auth, ProtectedFhirServer(auth, fixture_resources(), advertise=False) as fhir:
        smart = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url)
        with pytest.raises(FhirAuthError) as exc:
            smart.access_token()
    assert "--smart-token-url" in str(exc.value)


def test_token_goes_to_the_fhir_origin_only(rsa_client):
    _, key_file = rsa_client
    smart = SmartBackendAuth("c1", key_file, fhir_base_url="https://fhir.example.org/r4", token_url="https://as.example/t")
    prepared = requests.Request("GET", "https://files.elsewhere.example/export/1.ndjson",
                                headers={"Authorization": "Bearer leaked"}, auth=smart).prepare()
    assert "Authorization" not in prepared.headers
    assert smart.tokens_obtained == 0  # nothing was even asked for


def test_renewal_on_401_and_before_expiry(rsa_client):
    _, key_file = rsa_client
    with AuthServer(token_lifetime=4) as auth, ProtectedFhirServer(auth, fixture_resources(), clock_ahead=2.0) as fhir:
        # renew_before=0, and the server's clock 2 s ahead: a token the client still holds valid is refused (401);
        # it is renewed and the request sent again, once
        lazy = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url, renew_before=0)
        auth.register("c1", lazy.public_jwks())
        with FhirClient(fhir.base_url, auth=lazy, retries=0) as client:
            assert client.read("Patient", "v01-p1")["id"] == "v01-p1"
            time.sleep(2.5)
            assert client.read("Patient", "v01-p1")["id"] == "v01-p1"
        assert lazy.tokens_obtained == 2
        assert fhir.statuses("/fhir/Patient") == [200, 401, 200]
        # the default: renewed ahead of expiry (at most half the lifetime early), so the server never says 401
        fhir.log.clear()
        fhir.clock_ahead = 0.0
        eager = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url)
        with FhirClient(fhir.base_url, auth=eager, retries=0) as client:
            client.read("Patient", "v01-p1")
            time.sleep(2.5)
            client.read("Patient", "v01-p1")
        assert eager.tokens_obtained == 2 and fhir.statuses("/fhir/Patient") == [200, 200]


def test_export_download_outlives_its_token(rsa_client, tmp_path):
    """Files that take 1.2 s each, tokens the server holds valid for 1 s (4 s lifetime, its clock 3 s ahead) and a
    client that keeps a token until its announced expiry: tokens expire during the downloads; every status poll and
    file download still succeeds (a 401 renews the token and sends the request again)."""
    _, key_file = rsa_client
    resources = fixture_resources()
    with AuthServer(token_lifetime=4) as auth, \
            ProtectedFhirServer(auth, resources, file_seconds=1.2, clock_ahead=3.0) as fhir:
        smart = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url, renew_before=0)
        auth.register("c1", smart.public_jwks())
        with FhirClient(fhir.base_url, auth=smart, retries=0) as client:
            result = bulk_export(client, tmp_path / "export", poll_cap=0.1, log=lambda m: None)
        assert 401 in fhir.statuses("/files/")  # a token did expire on the way
        assert smart.tokens_obtained >= 2
    got = sorted(line for f in result.files for line in f.read_bytes().splitlines())
    assert got == sorted(json.dumps(r).encode() for r in resources)


def test_cohort_server_with_smart_completes_an_export_whose_token_expires(rsa_client, tmp_path, monkeypatch, capsys):
    key, key_file = rsa_client
    resources = fixture_resources()
    with AuthServer(token_lifetime=2) as auth, ProtectedFhirServer(auth, resources, file_seconds=1.2) as fhir:
        auth.register("cohort-client", {"keys": [public_jwk(key, "cohort-kid", "RS384")]})
        monkeypatch.setenv("MILAN_FHIR_SMART_KID", "cohort-kid")
        monkeypatch.setenv("MILAN_FHIR_SMART_KEY", str(key_file))
        monkeypatch.delenv("MILAN_FHIR_TOKEN", raising=False)
        status = main(["cohort", "--server", fhir.base_url, "--out", str(tmp_path / "out"), "--as-of", AS_OF,
                       "--workers", "1", "--poll-cap", "0.2", "--no-progress", "--smart-client-id", "cohort-client"])
        assert status == 0, capsys.readouterr().err
        downloads = [s for _, p, s in fhir.log if p.startswith("/files/")]
        assert downloads.count(200) == 4  # every file, despite tokens expiring mid-download
        assert len(auth.issued) >= 2
    lines = [orjson.loads(x) for x in (tmp_path / "out" / "results.ndjson").read_bytes().splitlines()]
    (expected,) = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)
    assert [(x["patient"], x["verdict"]) for x in lines] == [(expected.patient, str(expected.verdict))]


def test_evaluate_server_cli_with_smart(rsa_client, tmp_path, monkeypatch, capsys):
    key, key_file = rsa_client
    with AuthServer() as auth, ProtectedFhirServer(auth, fixture_resources()) as fhir:
        smart = SmartBackendAuth("cli", key_file, fhir_base_url=fhir.base_url)
        auth.register("cli", smart.public_jwks())
        monkeypatch.delenv("MILAN_FHIR_TOKEN", raising=False)
        monkeypatch.setenv("MILAN_FHIR_SMART_CLIENT_ID", "cli")
        status = main(["evaluate", "--server", fhir.base_url, "--patient", "v01-p1", "--as-of", AS_OF,
                       "--format", "json", "--smart-key", str(key_file)])
        out, err = capsys.readouterr()
    assert status == 0, err
    (line,) = [orjson.loads(x) for x in out.splitlines()]
    (expected,) = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)
    assert line["verdict"] == str(expected.verdict)
    for secret in auth.issued:
        assert secret["jti"] not in err


def test_smart_options_need_both_id_and_key(monkeypatch, capsys, tmp_path):
    for name in ("MILAN_FHIR_SMART_CLIENT_ID", "MILAN_FHIR_SMART_KEY", "MILAN_FHIR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    status = main(["evaluate", "--server", "http://127.0.0.1:9/fhir", "--patient", "p", "--smart-client-id", "x"])
    assert status == 2
    assert "private key file" in capsys.readouterr().err


def test_bad_keys_are_input_errors(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError, match="cannot be read as PEM"):
        SmartBackendAuth("c", bad, token_url="https://as/t")
    with pytest.raises(InputError, match="cannot read"):
        SmartBackendAuth("c", tmp_path / "missing.pem", token_url="https://as/t")
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = tmp_path / "p256.pem"
    p256.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(InputError, match="P-384"):
        SmartBackendAuth("c", p256, token_url="https://as/t")


def test_pickles_for_worker_processes(rsa_client):
    _, key_file = rsa_client
    with AuthServer() as auth, ProtectedFhirServer(auth, fixture_resources()) as fhir:
        smart = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url)
        auth.register("c1", smart.public_jwks())
        smart.access_token()
        copy = pickle.loads(pickle.dumps(smart))
        assert copy.kid == smart.kid and copy.tokens_obtained == 0
        assert copy.access_token()
        assert len(auth.issued) == 2


def test_no_token_or_assertion_in_the_logs(rsa_client, caplog):
    import logging

    _, key_file = rsa_client
    caplog.set_level(logging.DEBUG)
    with AuthServer(token_lifetime=4) as auth, ProtectedFhirServer(auth, fixture_resources(), clock_ahead=2.0) as fhir:
        smart = SmartBackendAuth("c1", key_file, fhir_base_url=fhir.base_url, renew_before=0)
        auth.register("c1", smart.public_jwks())
        assertions: list[str] = []
        sign = smart.client_assertion
        smart.client_assertion = lambda: assertions.append(sign()) or assertions[-1]  # type: ignore[method-assign]
        with FhirClient(fhir.base_url, auth=smart, retries=0) as client:
            client.read("Patient", "v01-p1")
            time.sleep(2.5)
            client.read("Patient", "v01-p1")  # 401, renewal, resend: the most logging there is
        assert len(auth.access_tokens) == 2 and len(assertions) == 2
    # the client side's logs (the test authorization server's own Authlib debug log does show what it issues)
    ours = [r for r in caplog.records if r.name.startswith(("milan_fhir", "urllib3", "requests"))]
    logged = "\n".join(r.getMessage() for r in ours)
    assert "SMART: access token obtained" in logged and "401" in logged
    for secret in auth.access_tokens + assertions:
        for part in secret.split("."):
            assert part not in logged
