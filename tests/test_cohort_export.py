"""Bulk Data $export client of the cohort command, against a small fake server (kick-off, polling with
Retry-After, manifest, streamed downloads), and `milan-fhir cohort --server` end to end."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from milan_fhir._client import FhirClient
from milan_fhir._cohort._export import EXPORT_TYPES, bulk_export, parse_retry_after
from milan_fhir.errors import FhirServerError
from test_cohort import AS_OF, make_export


class FakeBulkServer:
    """Serves ``export`` (a folder of NDJSON files) through the Bulk Data kick-off / status / file protocol."""

    def __init__(self, export: Path, *, pending_polls: int = 2, retry_after: str = "120", kickoff_status: int = 202):
        self.export = export
        self.pending = pending_polls
        self.retry_after = retry_after
        self.kickoff_status = kickoff_status
        self.requests: list[tuple[str, str, dict]] = []
        #: the manifest's output[].type of a file (tests put hostile values here)
        self.type_of = lambda name: name.split("-")[0].split(".")[0]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_DELETE(self):
                outer.requests.append(("DELETE", self.path, dict(self.headers)))
                self._send(202)

            def do_GET(self):
                outer.requests.append(("GET", self.path, dict(self.headers)))
                url = urlsplit(self.path)
                base = f"http://127.0.0.1:{outer.port}"
                if url.path.endswith("/$export"):
                    if outer.kickoff_status != 202:
                        oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported",
                                                                          "diagnostics": "export is off"}]}
                        return self._send(outer.kickoff_status, orjson.dumps(oo), {"Content-Type": "application/fhir+json"})
                    return self._send(202, b"", {"Content-Location": f"{base}/fhir/status/1"})
                if url.path == "/fhir/status/1":
                    if outer.pending > 0:
                        outer.pending -= 1
                        return self._send(202, b"", {"Retry-After": outer.retry_after, "X-Progress": "working"})
                    files = sorted(p for p in outer.export.iterdir() if p.name.split("-")[0] in EXPORT_TYPES)
                    manifest = {
                        "transactionTime": "2026-01-15T00:00:00Z", "request": f"{base}/fhir/$export",
                        "requiresAccessToken": False,
                        "output": [{"type": outer.type_of(p.name), "url": f"{base}/files/{p.name}"} for p in files],
                        "error": [],
                    }
                    return self._send(200, orjson.dumps(manifest), {"Content-Type": "application/json"})
                if url.path.startswith("/files/"):
                    data = (outer.export / url.path.split("/")[-1]).read_bytes()
                    return self._send(200, data, {"Content-Type": "application/fhir+ndjson"})
                self._send(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("export"))


def test_parse_retry_after():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 9 <= parse_retry_after("Thu, 15 Jan 2026 00:00:10 GMT", now=1768435200.0) <= 10


def test_export_polls_with_capped_retry_after_and_downloads(export, tmp_path):
    waits: list[float] = []
    with FakeBulkServer(export) as server, FhirClient(server.base_url, retries=0) as client:
        result = bulk_export(client, tmp_path / "dl", group="g1", poll_cap=3.0, sleep=waits.append, log=lambda m: None)
    assert waits == [3.0, 3.0]  # the server asked for 120 s; capped
    kickoff = server.requests[0]
    assert kickoff[1].startswith("/fhir/Group/g1/$export?")
    assert parse_qs(urlsplit(kickoff[1]).query)["_type"] == [",".join(EXPORT_TYPES)]
    assert kickoff[2].get("Prefer") == "respond-async" and kickoff[2].get("Accept") == "application/fhir+json"
    assert result.polls == 3 and result.transaction_time == "2026-01-15T00:00:00Z"
    assert ("DELETE", "/fhir/status/1") in [(m, p) for m, p, _ in server.requests]
    got = sorted(p.read_bytes() for p in result.files)
    want = sorted(p.read_bytes() for p in export.iterdir() if p.name.split("-")[0] in EXPORT_TYPES)
    assert got == want and len(got) == 8
    assert not list((tmp_path / "dl").glob(".*"))  # no partial files left


def test_export_refused_is_a_clear_error(export, tmp_path):
    with FakeBulkServer(export, kickoff_status=400) as server, FhirClient(server.base_url, retries=0) as client:
        with pytest.raises(FhirServerError) as exc:
            bulk_export(client, tmp_path / "dl", sleep=lambda s: None, log=lambda m: None)
    assert "export is off" in str(exc.value)


def test_cli_server_export_gives_the_same_results_as_the_files(export, tmp_path, capsys, monkeypatch):
    from milan_fhir._cli import main
    from milan_fhir._cohort import _export

    monkeypatch.setattr(_export.time, "sleep", lambda s: None)
    with FakeBulkServer(export, pending_polls=1, retry_after="1") as server:
        rc = main(["cohort", "--server", server.base_url, "--out", str(tmp_path / "srv"), "--as-of", AS_OF,
                   "--workers", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert main(["cohort", str(export), "--out", str(tmp_path / "local"), "--as-of", AS_OF, "--workers", "1",
                 "--no-progress"]) == 0
    srv = (tmp_path / "srv" / "results.ndjson").read_bytes()
    assert srv and srv == (tmp_path / "local" / "results.ndjson").read_bytes()
    assert (tmp_path / "srv" / "export").is_dir()
