"""SMART Backend Services authorization (SMART App Launch 2.x, "Backend Services"): a system client gets
short-lived access tokens by signing a one-time client assertion (RFC 7523 ``private_key_jwt``).

:class:`SmartBackendAuth` is a :class:`requests.auth.AuthBase`: put it on a session (``FhirClient(url,
auth=...)``) and every request to the FHIR server's origin carries ``Authorization: Bearer <token>``. It

- reads ``[base]/.well-known/smart-configuration`` once for the token endpoint and the scope style; when the
  server does not advertise one (many do not), the token URL given falls back in;
- signs each client assertion with PyJWT (no hand-written crypto): ``RS384`` for an RSA key, ``ES384`` for an EC
  P-384 key; header ``kid`` (given, the JWK's own, or the key's RFC 7638 thumbprint) and ``typ: JWT``; claims
  ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``jti`` unique, ``exp`` at most 5 minutes ahead;
- posts ``grant_type=client_credentials`` with ``system/...`` scopes: SMART v2 ``.rs`` where the server
  advertises v2 (``permission-v2`` or a ``.rs`` scope), else v1 ``.read`` (``write=True`` adds the scopes for
  writing RiskAssessment and Provenance);
- caches the token, renews it ``renew_before`` seconds before it expires, and, when the server answers 401
  anyway, renews it and sends the request again, once, and only to the FHIR server's own origin (a response
  hook, so it also covers streamed ``$export`` downloads);
- never logs a token or an assertion (each is added to the client's redaction list).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import requests

from ..errors import FhirAuthError, FhirConnectionError, InputError
from ._session import _SECRETS, install_redaction, make_session

__all__ = ["SmartBackendAuth", "SMART_ENV", "DEFAULT_TYPES"]

log = logging.getLogger("milan_fhir.client")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: the resource types milan-fhir reads (scopes are asked for these)
DEFAULT_TYPES = ("Patient", "Condition", "Observation", "Procedure")
#: the longest client assertion lifetime SMART allows
MAX_ASSERTION_SECONDS = 300
#: environment variables for the command line (the key is a file path; no secret goes on the command line)
SMART_ENV = {
    "client_id": "MILAN_FHIR_SMART_CLIENT_ID",
    "key": "MILAN_FHIR_SMART_KEY",
    "kid": "MILAN_FHIR_SMART_KID",
    "token_url": "MILAN_FHIR_SMART_TOKEN_URL",
    "scopes": "MILAN_FHIR_SMART_SCOPES",
}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SmartBackendAuth(requests.auth.AuthBase):
    """Bearer tokens from a SMART Backend Services authorization server.

    ``client_id``: the id the authorization server gave this client. ``private_key``: a PEM private key (bytes
    or text), the path of a PEM or JWK(S) file, a private JWK dict (or a JWKS with one private key), or a
    ``cryptography`` private key. ``fhir_base_url``: the FHIR server (its ``.well-known/smart-configuration`` is
    read, and tokens are sent to its origin only). ``token_url``: used when the server advertises none.
    ``scopes``: the scopes to ask for (default: read scopes for :data:`DEFAULT_TYPES`, v2 or v1 as advertised;
    ``write=True`` adds RiskAssessment and Provenance write scopes). ``kid``: the key id registered with the
    server (default: the JWK's ``kid``, else the RFC 7638 thumbprint of the public key, as :meth:`public_jwks`
    publishes it). ``renew_before``: renew a cached token this many seconds before it expires (at most half its
    lifetime). ``assertion_seconds``: lifetime of each client assertion (at most 300).
    """

    #: FhirClient must not refresh on 401 itself: the response hook here does it (once, same origin)
    refreshable = False

    def __init__(
        self,
        client_id: str,
        private_key: Any,
        *,
        fhir_base_url: str | None = None,
        token_url: str | None = None,
        scopes: Iterable[str] | str | None = None,
        write: bool = False,
        kid: str | None = None,
        renew_before: float = 60.0,
        assertion_seconds: int = MAX_ASSERTION_SECONDS,
        timeout: float = 30.0,
        retries: int = 2,
        verify: bool | str = True,
    ) -> None:
        if not client_id or not str(client_id).strip():
            raise InputError("SMART Backend Services needs a client id (the one the authorization server registered)")
        if not fhir_base_url and not token_url:
            raise InputError("SMART Backend Services needs the FHIR server URL or a token URL")
        try:
            import cryptography  # noqa: F401
            import jwt  # noqa: F401
        except ImportError:
            raise InputError(
                "SMART Backend Services needs PyJWT with cryptography: pip install 'milan-fhir[smart]'"
            ) from None
        install_redaction()
        self.client_id = str(client_id).strip()
        self._key, jwk_kid = _load_private_key(private_key)
        self.alg = _alg_for(self._key)
        self.kid = kid or jwk_kid or _thumbprint(self._public_jwk())
        self.fhir_base_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self.token_url_fallback = token_url
        self._scopes_given = scopes.split() if isinstance(scopes, str) else (list(scopes) if scopes else None)
        self.write = write
        self.renew_before = max(0.0, float(renew_before))
        self.assertion_seconds = max(1, min(int(assertion_seconds), MAX_ASSERTION_SECONDS))
        self.timeout = timeout
        self.retries = retries
        self.verify = verify
        self._init_runtime()

    # ------------------------------------------------------------------ pickling (cohort write-back workers)
    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._token: str | None = None
        self._expires_at = 0.0  # time.monotonic() when the cached token expires
        self._renew_at = 0.0
        self._config: dict[str, Any] | None = None
        self.token_url: str | None = None
        self.scopes: list[str] = []
        #: tokens obtained so far (for tests and diagnostics; never the token itself)
        self.tokens_obtained = 0

    def __getstate__(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization

        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k in ("_scopes_given",)}
        state["_key_pem"] = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for k in ("token_url", "scopes", "tokens_obtained"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        pem = state.pop("_key_pem")
        self.__dict__.update(state)
        self._key, _ = _load_private_key(pem)
        self._init_runtime()

    # ------------------------------------------------------------------ the public key, for registration
    def _public_jwk(self) -> dict[str, Any]:
        import jwt

        pub = self._key.public_key()
        if self.alg.startswith("RS"):
            return json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
        return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS to register with the authorization server (public key only, with ``kid``, ``alg``)."""
        jwk = self._public_jwk()
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]})
        return {"keys": [jwk]}

    # ------------------------------------------------------------------ discovery
    def _http(self) -> requests.Session:
        if self._session is None:
            # token requests are not repeated after the server may have acted on them (each assertion is
            # single-use); connection errors and 429/503 are retried (nothing was processed)
            self._session = make_session(self.retries, idempotent=False, verify=self.verify, pool=2)
            self._session.headers["Accept"] = "application/json"
        return self._session

    def configuration(self) -> dict[str, Any]:
        """The server's ``.well-known/smart-configuration`` (``{}`` when it offers none), read once."""
        if self._config is not None:
            return self._config
        config: dict[str, Any] = {}
        if self.fhir_base_url:
            url = f"{self.fhir_base_url}/.well-known/smart-configuration"
            try:
                resp = self._http().get(url, timeout=(min(10.0, self.timeout), self.timeout))
                if resp.status_code == 200:
                    data = resp.json()
                    if isinstance(data, dict):
                        config = data
                else:
                    log.info("no SMART configuration at the server (HTTP %s)", resp.status_code)
            except (requests.RequestException, ValueError) as exc:
                log.info("the server's SMART configuration cannot be read (%s)", type(exc).__name__)
        self._config = config
        endpoint = config.get("token_endpoint")
        if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
            self.token_url = endpoint
        elif self.token_url_fallback:
            self.token_url = self.token_url_fallback
        else:
            raise FhirAuthError(
                f"the FHIR server {self.fhir_base_url} advertises no token endpoint in "
                ".well-known/smart-configuration; give the token URL (--smart-token-url or "
                f"{SMART_ENV['token_url']})"
            )
        methods = config.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and methods and "private_key_jwt" not in methods:
            log.warning("the SMART configuration does not list private_key_jwt; trying it anyway")
        algs = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algs, list) and algs and self.alg not in algs:
            log.warning("the SMART configuration does not list %s among its signing algorithms", self.alg)
        self.scopes = self._scopes_given or default_scopes(config, write=self.write)
        return config

    # ------------------------------------------------------------------ tokens
    def client_assertion(self) -> str:
        """A fresh, single-use signed client assertion for the token endpoint."""
        import jwt

        if self.token_url is None:
            self.configuration()
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + self.assertion_seconds,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})
        _SECRETS.add(token)
        return token

    def access_token(self, *, force: bool = False) -> str:
        """The cached access token, renewed when it is close to expiry (or always, with ``force``)."""
        with self._lock:
            if not force and self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            return self._fetch_token()

    def _fetch_token(self) -> str:
        if self.token_url is None:
            self.configuration()
        assert self.token_url is not None
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(self.scopes),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        started = time.monotonic()
        try:
            resp = self._http().post(self.token_url, data=form, timeout=(min(10.0, self.timeout), self.timeout))
        except requests.RequestException as exc:
            raise FhirConnectionError(
                f"cannot reach the SMART token endpoint {_where(self.token_url)}: {type(exc).__name__}",
                url=self.token_url,
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200 or not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            error = description = ""
            if isinstance(data, dict):
                error = str(data.get("error") or "")
                description = str(data.get("error_description") or "")
            detail = ": ".join(p for p in (error, description) if p) or "no access token in the answer"
            raise FhirAuthError(
                f"the SMART token endpoint {_where(self.token_url)} refused client {self.client_id!r} ({detail}); "
                "check the client id, that the public key (kid "
                f"{self.kid}) is registered, and the scopes {' '.join(self.scopes)!r}",
                status=resp.status_code,
                url=self.token_url,
            )
        token_type = str(data.get("token_type") or "bearer")
        if token_type.lower() != "bearer":
            raise FhirAuthError(f"the SMART token endpoint issued a {token_type!r} token; only bearer tokens are supported")
        token = data["access_token"]
        _SECRETS.add(token)
        try:
            lifetime = float(data.get("expires_in", 300))
        except (TypeError, ValueError):
            lifetime = 300.0
        lifetime = max(0.0, lifetime)
        # the lifetime counts from when the server issued the token: from when we asked
        self._expires_at = started + lifetime
        self._renew_at = self._expires_at - min(self.renew_before, lifetime / 2)
        self._token = token
        self.tokens_obtained += 1
        log.info(
            "SMART: access token obtained from %s (expires in %.0f s; scopes %s)",
            _where(self.token_url), lifetime, data.get("scope") or " ".join(self.scopes),
        )
        return token

    # ------------------------------------------------------------------ requests.auth.AuthBase
    def _ours(self, url: str | None) -> bool:
        if not url:
            return False
        if self.fhir_base_url is None:
            return True
        return _origin(url) == _origin(self.fhir_base_url)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._ours(r.url):
            r.headers.pop("Authorization", None)  # never a token to another origin
            return r
        r.headers["Authorization"] = f"Bearer {self.access_token()}"
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        """On a 401 from the FHIR server: renew the token and send the request once more (same origin only)."""
        request = resp.request
        if resp.status_code != 401 or getattr(request, "_smart_retried", False) or not self._ours(request.url):
            return resp
        log.info("the server refused the access token (401): renewing it and sending the request again")
        resp.content  # noqa: B018 - read the body so the connection can be reused
        resp.close()
        token = self.access_token(force=True)
        again = request.copy()
        again.headers["Authorization"] = f"Bearer {token}"
        again._smart_retried = True  # type: ignore[attr-defined]
        new = resp.connection.send(again, **kwargs)
        new.history.append(resp)
        new.request = again
        return new

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, kid={self.kid!r}, alg={self.alg!r})"


# ---------------------------------------------------------------------------------------------- scopes


def default_scopes(config: dict[str, Any], *, write: bool = False, types: Iterable[str] = DEFAULT_TYPES) -> list[str]:
    """``system/<Type>.rs`` (SMART v2) when the server advertises v2, else ``system/<Type>.read`` (v1)."""
    capabilities = config.get("capabilities") if isinstance(config.get("capabilities"), list) else []
    supported = config.get("scopes_supported") if isinstance(config.get("scopes_supported"), list) else []
    v2 = "permission-v2" in capabilities or any(
        isinstance(s, str) and s.rsplit(".", 1)[-1] in ("rs", "cruds", "r", "s", "cu", "c") and "/" in s
        for s in supported
    )
    scopes = [f"system/{t}.rs" if v2 else f"system/{t}.read" for t in types]
    if write:
        scopes += (
            ["system/RiskAssessment.cru", "system/Provenance.c"]
            if v2
            else ["system/RiskAssessment.write", "system/Provenance.write"]
        )
    return scopes


# ---------------------------------------------------------------------------------------------- keys


def _load_private_key(source: Any) -> tuple[Any, str | None]:
    """(a cryptography private key, the JWK's kid if it had one) from PEM, a JWK / JWKS, a path or a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(source, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return source, None
    where = "the SMART private key"
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "-----BEGIN" not in source and not source.lstrip().startswith("{")):
        path = Path(source)
        where = str(path)
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the SMART private key: {exc.strerror or exc}", file=str(path)) from None
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, bytes):
        text = source.strip()
        if text.startswith(b"{"):
            try:
                source = json.loads(text)
            except ValueError:
                raise InputError("the SMART private key is neither PEM nor a JSON Web Key", file=where) from None
        else:
            try:
                key = serialization.load_pem_private_key(text, password=None)
            except (ValueError, TypeError) as exc:
                raise InputError(f"the SMART private key cannot be read as PEM ({exc})", file=where) from None
            if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                raise InputError("the SMART private key must be an RSA or EC (P-384) key", file=where)
            return key, None
    if isinstance(source, dict):
        jwk = source
        if "keys" in jwk:
            private = [k for k in jwk.get("keys") or [] if isinstance(k, dict) and "d" in k]
            if len(private) != 1:
                raise InputError("the SMART JWKS must hold exactly one private key", file=where)
            jwk = private[0]
        if "d" not in jwk:
            raise InputError("the SMART JWK is a public key; the private key is needed to sign", file=where)
        import jwt

        try:
            if jwk.get("kty") == "RSA":
                key = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
            elif jwk.get("kty") == "EC":
                key = jwt.algorithms.ECAlgorithm.from_jwk(jwk)
            else:
                raise InputError(f"the SMART JWK has key type {jwk.get('kty')!r}; RSA or EC needed", file=where)
        except jwt.exceptions.InvalidKeyError as exc:
            raise InputError(f"the SMART JWK cannot be read ({exc})", file=where) from None
        kid = jwk.get("kid")
        return key, str(kid) if kid else None
    raise InputError(f"the SMART private key must be PEM, a JWK or a path, not {type(source).__name__}")


def _alg_for(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise InputError(f"the SMART RSA key has {key.key_size} bits; at least 2048 are needed")
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp384r1":
            raise InputError(f"the SMART EC key is on curve {key.curve.name}; ES384 needs P-384 (secp384r1)")
        return "ES384"
    raise InputError("the SMART private key must be an RSA or EC (P-384) key")


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 of the required members, in order): a stable default ``kid``."""
    members = ("e", "kty", "n") if jwk.get("kty") == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _where(url: str | None) -> str:
    if not url:
        return "(none)"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
