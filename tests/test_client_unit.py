"""The FHIR client against a tiny scripted HTTP server on loopback: retries, typed errors, paging, auth, logs."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from milan_fhir._client import FhirClient
from milan_fhir.errors import (
    FhirAuthError,
    FhirConflictError,
    FhirConnectionError,
    FhirNotFoundError,
    FhirServerError,
    FhirUnprocessableError,
)

Reply = tuple[int, dict[str, str], Any] | str  # (status, headers, json body) or "drop" (close without answering)


class Scripted:
    """A loopback HTTP server answering from a script: ``handler(method, path, headers, body) -> Reply``."""

    def __init__(self, handler: Callable[[str, str, dict, bytes], Reply]) -> None:
        self.handler = handler
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k: v for k, v in self.headers.items()}
                outer.seen.append((self.command, self.path, headers))
                reply = outer.handler(self.command, self.path, headers, body)
                if reply == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                status, hdrs, payload = reply
                if isinstance(payload, bytes):
                    data, ctype = payload, "text/html"
                else:
                    data, ctype = (json.dumps(payload).encode() if payload is not None else b""), "application/fhir+json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in hdrs.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[Scripted] = []

    def start(handler: Callable[[str, str, dict, bytes], Reply]) -> Scripted:
        s = Scripted(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def sleeps(monkeypatch):
    """Record the waits urllib3's Retry asks for, without waiting."""
    waited: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", lambda s: waited.append(s))
    return waited


@pytest.fixture(autouse=True)
def _no_env_retries(monkeypatch):
    monkeypatch.delenv("MILAN_FHIR_RETRIES", raising=False)


def oo(text: str, severity: str = "error") -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing", "diagnostics": text}]}


PATIENT = {"resourceType": "Patient", "id": "p1"}


# ------------------------------------------------------------------------------------------------- retries


def test_retries_503_honouring_retry_after(serve, sleeps):
    answers = iter([(503, {"Retry-After": "7"}, oo("busy")), (200, {}, PATIENT)])
    s = serve(lambda *a: next(answers))
    with FhirClient(s.base, retries=2) as c:
        assert c.read("Patient", "p1") == PATIENT
    assert len(s.seen) == 2
    assert 7 in sleeps  # the Retry-After value, not the backoff


def test_gives_up_after_retries_with_a_clear_error(serve, sleeps):
    s = serve(lambda *a: (503, {"Retry-After": "1"}, oo("maintenance window")))
    with FhirClient(s.base, retries=2) as c, pytest.raises(FhirConnectionError) as err:
        c.read("Patient", "p1")
    assert len(s.seen) == 3
    assert err.value.status == 503
    assert "maintenance window" in str(err.value)


def test_no_retry_when_switched_off(serve, sleeps):
    s = serve(lambda *a: (503, {"Retry-After": "1"}, oo("busy")))
    with FhirClient(s.base, retries=0) as c, pytest.raises(FhirConnectionError):
        c.read("Patient", "p1")
    assert len(s.seen) == 1
    assert sleeps == []


def test_env_switches_retries_off_when_no_count_is_given(serve, sleeps, monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_RETRIES", "0")
    s = serve(lambda *a: (502, {}, None))
    with FhirClient(s.base) as c, pytest.raises(FhirConnectionError):
        c.read("Patient", "p1")
    assert c.retries == 0
    assert len(s.seen) == 1


def test_an_explicit_retry_count_wins_over_the_environment(serve, sleeps, monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_RETRIES", "0")
    s = serve(lambda *a: (502, {}, None))
    with FhirClient(s.base, retries=2) as c, pytest.raises(FhirConnectionError):
        c.read("Patient", "p1")
    assert c.retries == 2
    assert len(s.seen) == 3  # the first attempt and the two retries asked for


def test_the_environment_sets_the_count_and_the_default_is_three(serve, sleeps, monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_RETRIES", "1")
    s = serve(lambda *a: (502, {}, None))
    with FhirClient(s.base) as c, pytest.raises(FhirConnectionError):
        c.read("Patient", "p1")
    assert len(s.seen) == 2
    monkeypatch.delenv("MILAN_FHIR_RETRIES")
    with FhirClient(s.base) as c:
        assert c.retries == 3


@pytest.mark.parametrize("raw", ["three", "-1", "1.5", "2x"])
def test_an_unusable_retry_count_in_the_environment_is_an_error(raw, monkeypatch):
    from milan_fhir.errors import ConfigurationError, MilanFhirError

    monkeypatch.setenv("MILAN_FHIR_RETRIES", raw)
    with pytest.raises(ConfigurationError, match="MILAN_FHIR_RETRIES") as info:
        FhirClient("http://127.0.0.1:9/fhir")
    assert raw in str(info.value) and isinstance(info.value, MilanFhirError)
    with FhirClient("http://127.0.0.1:9/fhir", retries=1) as c:  # an explicit count never reads it
        assert c.retries == 1


def test_dropped_connection_retried_for_a_read(serve, sleeps):
    answers = iter(["drop", (200, {}, PATIENT)])
    s = serve(lambda *a: next(answers))
    with FhirClient(s.base, retries=2) as c:
        assert c.read("Patient", "p1")["id"] == "p1"
    assert len(s.seen) == 2


def test_dropped_connection_not_resent_for_a_plain_post(serve, sleeps):
    """A POST that may have been acted on is not sent again: a clear error instead of a double write."""
    s = serve(lambda *a: "drop")
    with FhirClient(s.base, retries=3) as c, pytest.raises(FhirConnectionError) as err:
        c.transaction([{"request": {"method": "POST", "url": "Observation"}, "resource": {"resourceType": "Observation"}}])
    assert len(s.seen) == 1
    assert "closed the connection" in str(err.value)


def test_502_not_resent_for_a_plain_post_but_503_is(serve, sleeps):
    s = serve(lambda *a: (502, {}, None))
    with FhirClient(s.base, retries=3) as c, pytest.raises(FhirConnectionError):
        c.transaction([])
    assert len(s.seen) == 1
    answers = iter([(503, {"Retry-After": "1"}, None), (200, {}, {"resourceType": "Bundle", "type": "transaction-response"})])
    s2 = serve(lambda *a: next(answers))
    with FhirClient(s2.base, retries=3) as c:
        assert c.transaction([])["type"] == "transaction-response"
    assert len(s2.seen) == 2


def test_idempotent_transaction_retried_after_drop(serve, sleeps):
    answers = iter(["drop", (200, {}, {"resourceType": "Bundle", "type": "transaction-response"})])
    s = serve(lambda *a: next(answers))
    with FhirClient(s.base, retries=3) as c:
        assert c.transaction([], idempotent=True)["type"] == "transaction-response"
    assert len(s.seen) == 2


def test_unreachable_server_is_a_connection_error(sleeps):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with FhirClient(f"http://127.0.0.1:{port}/fhir", retries=1) as c, pytest.raises(FhirConnectionError) as err:
        c.read("Patient", "p1")
    assert "cannot reach the FHIR server" in str(err.value)
    assert "connection refused" in str(err.value)


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, cls",
    [(400, FhirUnprocessableError), (422, FhirUnprocessableError), (404, FhirNotFoundError), (410, FhirNotFoundError),
     (409, FhirConflictError), (412, FhirConflictError), (403, FhirAuthError), (500, FhirServerError)],
)
def test_operation_outcome_becomes_typed_error(serve, status, cls):
    s = serve(lambda *a: (status, {}, oo(f"HAPI-0989: reason {status}")))
    with FhirClient(s.base, retries=0) as c, pytest.raises(cls) as err:
        c.read("Patient", "p1")
    assert type(err.value) is cls
    assert err.value.status == status
    assert err.value.diagnostics == [f"error: HAPI-0989: reason {status}"]
    assert f"reason {status}" in str(err.value)
    assert err.value.operation_outcome["resourceType"] == "OperationOutcome"


def test_non_json_answer_is_a_clear_error(serve):
    s = serve(lambda *a: (200, {}, b"<html>login page</html>"))
    with FhirClient(s.base, retries=0) as c, pytest.raises(FhirServerError, match="not FHIR JSON.*text/html"):
        c.json("GET", "Patient/p1")


def test_error_status_without_operation_outcome(serve):
    s = serve(lambda *a: (500, {}, b"<html>Internal error</html>"))
    with FhirClient(s.base, retries=0) as c, pytest.raises(FhirServerError, match="HTTP 500") as err:
        c.read("Patient", "p1")
    assert err.value.operation_outcome is None


def test_bad_base_url():
    with pytest.raises(FhirConnectionError, match="must start with http"):
        FhirClient("localhost:8080/fhir")


# ------------------------------------------------------------------------------------------------- paging


def _paged(total_pages: int | None, per_page: int = 2):
    def handler(method, path, headers, body):
        page = int(path.split("page=")[1]) if "page=" in path else 1
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Observation", "id": f"o{page}-{i}"}, "search": {"mode": "match"}}
                for i in range(per_page)
            ],
            "link": [],
        }
        if total_pages is None or page < total_pages:
            bundle["link"].append({"relation": "next", "url": f"http://elsewhere.invalid/fhir?_getpages=x&page={page + 1}"})
        return 200, {}, bundle

    return handler


def test_paging_follows_next_links_on_our_own_origin(serve):
    s = serve(_paged(3))
    with FhirClient(s.base, retries=0) as c:
        ids = [r["id"] for r in c.search("Observation", {"subject": "Patient/p1"})]
    assert ids == ["o1-0", "o1-1", "o2-0", "o2-1", "o3-0", "o3-1"]
    assert len(s.seen) == 3  # the foreign host in the links was rewritten to ours


def test_paging_cap_stops_an_endless_search(serve):
    s = serve(_paged(None))
    with FhirClient(s.base, retries=0, page_cap=4) as c, pytest.raises(FhirServerError, match="more than 4 pages"):
        list(c.search("Observation"))
    assert len(s.seen) == 4


def test_paging_loop_detected(serve):
    def handler(method, path, headers, body):
        return 200, {}, {"resourceType": "Bundle", "type": "searchset", "entry": [],
                         "link": [{"relation": "next", "url": "/fhir?_getpages=same"}]}

    s = serve(handler)
    with FhirClient(s.base, retries=0) as c, pytest.raises(FhirServerError, match="repeats"):
        list(c.search("Observation"))
    assert len(s.seen) == 2


# ------------------------------------------------------------------------------------------------- auth + logs


def test_token_refreshed_once_on_401(serve):
    tokens = iter(["old-token-1", "new-token-2", "never-used-3"])
    calls = []

    def source():
        calls.append(1)
        return next(tokens)

    def handler(method, path, headers, body):
        if headers.get("Authorization") == "Bearer new-token-2":
            return 200, {}, PATIENT
        return 401, {}, oo("token expired")

    s = serve(handler)
    with FhirClient(s.base, token=source, retries=0) as c:
        assert c.read("Patient", "p1") == PATIENT
    assert len(calls) == 2
    assert [h.get("Authorization") for _, _, h in s.seen] == ["Bearer old-token-1", "Bearer new-token-2"]


def test_401_with_a_fixed_token_is_an_auth_error_without_loop(serve):
    s = serve(lambda *a: (401, {}, oo("bad token")))
    with FhirClient(s.base, token="fixed", retries=0) as c, pytest.raises(FhirAuthError, match="bad token"):
        c.read("Patient", "p1")
    assert len(s.seen) == 1


def test_refresh_only_once(serve):
    s = serve(lambda *a: (401, {}, oo("still bad")))
    with FhirClient(s.base, token=lambda: "tok-abc", retries=0) as c, pytest.raises(FhirAuthError):
        c.read("Patient", "p1")
    assert len(s.seen) == 2


def test_tokens_and_patient_data_stay_out_of_logs(serve, caplog, sleeps):
    secret = "eyJhbGciOiJSUzI1NiJ9.s3cr3t-payload.sig"
    answers = iter([(503, {"Retry-After": "1"}, None)])
    s = serve(lambda *a: next(answers, (200, {}, PATIENT)))
    caplog.set_level(logging.DEBUG)
    with FhirClient(s.base, token=secret, retries=2) as c:
        c.search_page("Patient", {"family": "Smithers-Jones", "birthdate": "1961-04-02"})
        c.read("Patient", "pat-7731")
    text = caplog.text
    assert "Patient" in text  # something was logged about the requests
    for private in (secret, "s3cr3t", "Smithers-Jones", "1961-04-02", "pat-7731"):
        assert private not in text
    assert s.seen[0][2]["Authorization"] == f"Bearer {secret}"  # it was sent, just never logged


def test_capabilities_cached_and_read(serve):
    cs = {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "interaction": [{"code": "batch"}, {"code": "transaction"}],
                  "resource": [{"type": "Patient", "operation": [{"name": "everything", "definition": "x"}]}],
                  "operation": [{"name": "validate", "definition": "y"}]}],
    }
    s = serve(lambda *a: (200, {}, cs))
    with FhirClient(s.base, retries=0) as c:
        assert c.supports("batch") and c.supports("transaction") and not c.supports("history-system")
        assert c.supports_operation("$everything", "Patient")
        assert c.supports_operation("validate")
        assert not c.supports_operation("everything", "Observation")
    assert len(s.seen) == 1
