"""Real servers for the CDS Hooks and SMART Backend Services tests, all on loopback ports.

- :class:`AuthServer`: an OAuth 2.0 authorization server built with Authlib (its Flask integration, served by
  werkzeug in a thread): the ``client_credentials`` grant with ``private_key_jwt`` client authentication
  (RFC 7523). Authlib verifies each client assertion's signature against the registered client's JWKS, its
  ``iss``/``sub``, ``aud`` (the token URL) and ``exp``; the ``jti`` is checked against a replay set here. It
  issues JWT access tokens (RS256, its own key) that expire after ``token_lifetime`` seconds.
- :class:`ProtectedFhirServer`: a small FHIR-ish server that requires those tokens (signature, ``exp`` with no
  leeway, scope for the resource type), serves ``.well-known/smart-configuration``, searches by subject,
  reads, and a Bulk Data ``$export`` whose files stream slowly (so a token expires mid-download).
- :func:`serve_asgi`: runs an ASGI app (the CDS Hooks service) under uvicorn on a free loopback port.
- :class:`CdsClientSigner`: the CDS client side of CDS Hooks: a key pair, its JWKS file, signed JWTs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key(curve: Any = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP384R1())


def pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algo.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# ---------------------------------------------------------------------------------------------- OAuth 2.0


class _Client:
    """An Authlib client model (ClientMixin) for a SMART backend client registered with its JWKS."""

    def __init__(self, client_id: str, jwks: dict[str, Any], scopes: list[str]) -> None:
        self.client_id = client_id
        self.jwks = jwks
        self.scopes = scopes

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        asked = scope.split() if scope else []
        return " ".join(s for s in asked if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "private_key_jwt" and endpoint == "token"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class AuthServer:
    """The OAuth 2.0 authorization server (Authlib) of the SMART tests."""

    def __init__(self, *, token_lifetime: int = 300, v2: bool = True) -> None:
        from authlib.integrations.flask_oauth2 import AuthorizationServer
        from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
        from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerTokenGenerator
        from flask import Flask
        from joserfc.jwk import KeySet
        from werkzeug.serving import make_server

        self.token_lifetime = token_lifetime
        self.clients: dict[str, _Client] = {}
        self.used_jti: set[str] = set()
        self.issued: list[dict[str, Any]] = []  # claims of the access tokens issued
        self.access_tokens: list[str] = []  # the access tokens themselves (to prove they are never logged)
        self.refused: list[str] = []  # error descriptions of refused token requests
        self.assertion_headers: list[dict[str, Any]] = []
        self.signing_key = rsa_key()
        self.signing_kid = "as-1"
        self.v2 = v2
        outer = self

        sock = _free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token_url = f"{self.base_url}/token"

        class PrivateKeyJwt(JWTBearerClientAssertion):
            CLIENT_AUTH_METHOD = "private_key_jwt"

            def get_audiences(self):
                return [outer.token_url]

            def validate_jti(self, claims, jti):
                key = f"{claims['sub']}:{jti}"
                if key in outer.used_jti:
                    return False
                outer.used_jti.add(key)
                return True

            def resolve_client_public_key(self, client):
                return KeySet.import_key_set(client.jwks)

            def process_assertion_claims(self, assertion, resolve_key):
                # Authlib's own check, with SMART's algorithms allowed (joserfc accepts only its "recommended"
                # ones unless told): signature against the client's JWKS, then iss/sub, aud, exp and jti
                from authlib.oauth2.rfc6749 import InvalidClientError
                from joserfc import jws
                from joserfc import jwt as jose_jwt
                from joserfc.errors import JoseError

                outer.assertion_headers.append(dict(jws.extract_compact(assertion.encode()).headers()))
                try:
                    token = jose_jwt.decode(assertion, resolve_key, algorithms=["RS384", "ES384"])
                except JoseError as e:
                    raise InvalidClientError(description=e.description) from e
                self.verify_claims(token.claims)
                return token.claims

        class SystemClientCredentials(ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

        class Generator(JWTBearerTokenGenerator):
            DEFAULT_EXPIRES_IN = token_lifetime

            def get_token_data(self, grant_type, client, expires_in, user=None, scope=None):
                data = super().get_token_data(grant_type, client, expires_in, user, scope)
                data["jti"] = uuid.uuid4().hex
                outer.issued.append(data)
                return data

        app = Flask("milan-fhir-test-oauth")
        server = AuthorizationServer(app, query_client=lambda cid: outer.clients.get(cid), save_token=lambda t, r: None)
        server.register_grant(SystemClientCredentials)
        server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt())
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key, as_dict=False))
        jwk["kid"] = self.signing_kid
        server.register_token_generator(
            "client_credentials", Generator(KeySet.import_key_set({"keys": [jwk]}), issuer=self.base_url, alg="RS256")
        )

        @app.post("/token")
        def token():
            resp = server.create_token_response()
            if resp.status_code == 200:
                outer.access_tokens.append(resp.get_json()["access_token"])
            else:
                outer.refused.append(resp.get_json().get("error_description") or resp.get_json().get("error"))
            return resp

        self._httpd = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def register(self, client_id: str, jwks: dict[str, Any], scopes: list[str] | None = None) -> None:
        types = ("Patient", "Condition", "Observation", "Procedure", "Group", "RiskAssessment", "Provenance")
        default = [f"system/{t}.{s}" for t in types for s in ("rs", "read", "cru", "c", "write")]
        self.clients[client_id] = _Client(client_id, jwks, scopes or default)

    def public_key(self) -> Any:
        return self.signing_key.public_key()

    def __enter__(self) -> "AuthServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# ---------------------------------------------------------------------------------------------- FHIR-ish


class ProtectedFhirServer:
    """A FHIR-ish server that requires the AuthServer's tokens; searches, reads and a slow ``$export``."""

    def __init__(
        self,
        auth: AuthServer,
        resources: list[dict[str, Any]],
        *,
        advertise: bool = True,
        file_seconds: float = 0.0,
        pending_polls: int = 1,
        clock_ahead: float = 0.0,
    ) -> None:
        self.auth = auth
        self.resources = resources
        self.advertise = advertise
        self.file_seconds = file_seconds
        self.pending = pending_polls
        #: this server's clock runs ahead of the client's: tokens expire here that many seconds early
        self.clock_ahead = clock_ahead
        self.log: list[tuple[str, str, int]] = []  # method, path, status
        self.tokens_seen: set[str] = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body=b"", ctype="application/fhir+json", headers=None):
                with outer.lock:  # logged before the answer leaves: a client that reads it finds it logged
                    outer.log.append((self.command, urlsplit(self.path).path, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self, need: str | None) -> bool:
                header = self.headers.get("Authorization", "")
                token = header[7:] if header.startswith("Bearer ") else ""
                try:
                    claims = jwt.decode(token, outer.auth.public_key(), algorithms=["RS256"], issuer=outer.auth.base_url,
                                        leeway=0, options={"require": ["exp", "iat", "iss"]})
                    if claims["exp"] <= time.time() + outer.clock_ahead:  # expired by this server's clock
                        raise jwt.ExpiredSignatureError("expired")
                except jwt.PyJWTError as exc:
                    oo = {"resourceType": "OperationOutcome",
                          "issue": [{"severity": "error", "code": "login", "diagnostics": type(exc).__name__}]}
                    self._send(401, json.dumps(oo).encode(), headers={"WWW-Authenticate": "Bearer"})
                    return False
                with outer.lock:
                    outer.tokens_seen.add(claims["jti"])
                scopes = (claims.get("scope") or "").split()
                if need and f"system/{need}.rs" not in scopes and f"system/{need}.read" not in scopes:
                    self._send(403, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}')
                    return False
                return True

            def do_DELETE(self):
                if self._authorised(None):
                    self._send(202)

            def do_GET(self):
                url = urlsplit(self.path)
                path = url.path
                base = f"http://127.0.0.1:{outer.port}"
                if path == "/fhir/.well-known/smart-configuration":
                    if not outer.advertise:
                        return self._send(404, b"{}", "application/json")
                    conf = {
                        "token_endpoint": outer.auth.token_url,
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                        "grant_types_supported": ["client_credentials"],
                        "capabilities": ["client-confidential-asymmetric"] + (["permission-v2"] if outer.auth.v2 else []),
                    }
                    return self._send(200, json.dumps(conf).encode(), "application/json")
                if path == "/fhir/metadata":
                    cs = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                          "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server"}]}
                    return self._send(200, json.dumps(cs).encode())
                if path.endswith("/$export"):
                    if not outer._auth_ok(self, None):
                        return
                    return self._send(202, b"", headers={"Content-Location": f"{base}/fhir/status/1"})
                if path == "/fhir/status/1":
                    if not outer._auth_ok(self, None):
                        return
                    if outer.pending > 0:
                        outer.pending -= 1
                        return self._send(202, b"", headers={"Retry-After": "1"})
                    types = sorted({r["resourceType"] for r in outer.resources})
                    manifest = {"transactionTime": "2026-01-15T00:00:00Z", "request": f"{base}/fhir/$export",
                                "requiresAccessToken": True,
                                "output": [{"type": t, "url": f"{base}/files/{t}.ndjson"} for t in types], "error": []}
                    return self._send(200, json.dumps(manifest).encode(), "application/json")
                if path.startswith("/files/"):
                    rtype = path.rsplit("/", 1)[-1].split(".")[0]
                    if not outer._auth_ok(self, rtype):
                        return
                    return outer._stream_file(self, rtype)
                parts = path.removeprefix("/fhir/").split("/")
                if len(parts) == 1 and parts[0]:
                    rtype = parts[0]
                    if not outer._auth_ok(self, rtype):
                        return
                    subject = (parse_qs(url.query).get("subject") or [""])[0]
                    found = [r for r in outer.resources if r["resourceType"] == rtype
                             and (r.get("subject") or {}).get("reference") == subject]
                    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                              "entry": [{"resource": r, "search": {"mode": "match"}} for r in found]}
                    return self._send(200, json.dumps(bundle).encode())
                if len(parts) == 2:
                    if not outer._auth_ok(self, parts[0]):
                        return
                    for r in outer.resources:
                        if r["resourceType"] == parts[0] and r.get("id") == parts[1]:
                            return self._send(200, json.dumps(r).encode())
                    return self._send(404, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}')
                self._send(404, b"{}")

        self._handler = Handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def _auth_ok(handler: Any, need: str | None) -> bool:
        return handler._authorised(need)

    def _stream_file(self, handler: Any, rtype: str) -> None:
        lines = [json.dumps(r).encode() + b"\n" for r in self.resources if r["resourceType"] == rtype]
        body = b"".join(lines)
        with self.lock:
            self.log.append(("GET", f"/files/{rtype}.ndjson", 200))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+ndjson")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        # streamed in 4 pieces over file_seconds: the token may expire while the body is on its way
        step = max(1, len(body) // 4 + 1)
        for i in range(0, len(body), step):
            handler.wfile.write(body[i : i + step])
            handler.wfile.flush()
            if self.file_seconds:
                time.sleep(self.file_seconds / 4)

    def statuses(self, prefix: str) -> list[int]:
        return [s for _, p, s in self.log if p.startswith(prefix)]

    def __enter__(self) -> "ProtectedFhirServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------- CDS Hooks


@contextlib.contextmanager
def serve_asgi(make_app: Any) -> Iterator[str]:
    """Run ``make_app(base_url)`` under uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    sock = _free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(base_url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class CdsClientSigner:
    """A CDS client (the EHR): its key, its JWKS file, and the JWTs it signs for each call."""

    def __init__(self, tmp: Path, *, issuer: str = "https://ehr.example.org", kid: str = "ehr-1", alg: str = "RS384"):
        self.issuer = issuer
        self.kid = kid
        self.alg = alg
        self.key = rsa_key() if alg.startswith("RS") else ec_key(ec.SECP256R1() if alg == "ES256" else None)
        self.jwks_file = tmp / f"jwks-{kid}.json"
        self.jwks_file.write_text(json.dumps({"keys": [public_jwk(self.key, kid, alg)]}))

    def token(self, aud: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "ehr-client", "aud": aud, "iat": now, "exp": now + 120,
                  "jti": uuid.uuid4().hex}
        headers = {"kid": self.kid, "typ": "JWT"}
        key: Any = self.key
        alg = overrides.pop("alg", self.alg)
        headers.update(overrides.pop("headers", {}))
        key = overrides.pop("key", key)
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key, algorithm=alg, headers=headers)


class TokenCheckingProxy:
    """A reverse proxy in front of a real FHIR server (the local HAPI) that requires the AuthServer's tokens:
    signature and expiry; reads need a read scope of the type, a batch or transaction that writes needs
    ``system/RiskAssessment.cru`` or ``.write``. Serves ``.well-known/smart-configuration`` itself."""

    def __init__(self, auth: AuthServer, upstream: str) -> None:
        import http.client

        self.auth = auth
        self.upstream = urlsplit(upstream.rstrip("/"))
        self.log: list[tuple[str, str, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status, body, headers):
                outer.log.append((self.command, urlsplit(self.path).path, status))
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if path == "/fhir/.well-known/smart-configuration":
                    conf = {"token_endpoint": outer.auth.token_url, "capabilities": ["permission-v2"],
                            "token_endpoint_auth_methods_supported": ["private_key_jwt"]}
                    return self._reply(200, json.dumps(conf).encode(), [("Content-Type", "application/json")])
                token = (self.headers.get("Authorization") or "")[7:]
                try:
                    claims = jwt.decode(token, outer.auth.public_key(), algorithms=["RS256"], issuer=outer.auth.base_url)
                except jwt.PyJWTError:
                    return self._reply(401, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}',
                                       [("Content-Type", "application/fhir+json"), ("WWW-Authenticate", "Bearer")])
                scopes = set((claims.get("scope") or "").split())
                writes = self.command in ("PUT", "DELETE") or b'"method":"PUT"' in body.replace(b" ", b"") \
                    or b'"method":"POST"' in body.replace(b" ", b"")
                if writes and not scopes & {"system/RiskAssessment.cru", "system/RiskAssessment.write"}:
                    return self._reply(403, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}',
                                       [("Content-Type", "application/fhir+json")])
                conn = http.client.HTTPConnection(outer.upstream.hostname, outer.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self._reply(resp.status, data, resp.getheaders())

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}{self.upstream.path}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "TokenCheckingProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
