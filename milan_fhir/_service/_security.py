"""Verifying the CDS client's JWT (CDS Hooks 2.0, "Trusting CDS Clients").

Every call carries ``Authorization: Bearer <JWT>`` signed by the CDS client. :class:`JwtVerifier` accepts it
only when all of these hold, and otherwise refuses it with a reason that names no part of the token:

- the header names a ``kid`` and an asymmetric ``alg`` that is allowed: ``RS384`` and ``ES384`` always,
  ``RS256`` / ``ES256`` only when configured; ``none`` and every HMAC algorithm are refused outright;
- the (not yet verified) ``iss`` is one of the trusted issuers (``--trust ISSUER=JWKS_URL_OR_FILE``), and the
  ``kid`` is a key of that issuer's JWKS (a JWKS URL is fetched with PyJWT's :class:`~jwt.PyJWKClient`,
  cached, and fetched again once for a ``kid`` it does not know: key rotation);
- the signature verifies with that key (PyJWT) and the key type fits the algorithm;
- ``aud`` is exactly the URL of the endpoint called (``--public-url`` + path; never taken from the request's
  Host header, which a caller controls);
- ``exp``, ``iat`` and ``jti`` are present; ``exp`` is not past, and at most 5 minutes ahead; ``iat`` is not
  in the future (``leeway`` seconds of clock skew allowed each way);
- the ``jti`` was not seen before from this issuer while the token could still be valid (replay cache).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["AuthFailure", "JwtVerifier", "TrustedIssuer", "parse_trust", "DEFAULT_ALGORITHMS", "OPTIONAL_ALGORITHMS"]

log = logging.getLogger("milan_fhir.service")

DEFAULT_ALGORITHMS = ("RS384", "ES384")
OPTIONAL_ALGORITHMS = ("RS256", "ES256")
#: the longest lifetime a CDS client's JWT may claim (CDS Hooks: "no more than 5 minutes")
MAX_LIFETIME = 300


class AuthFailure(Exception):
    """The call's JWT is refused; ``str()`` is a reason safe to log and to answer (no token content)."""


@dataclass
class TrustedIssuer:
    issuer: str
    jwks_source: str  # a URL or a file path
    _client: Any = None  # jwt.PyJWKClient for a URL
    _keys: dict[str, Any] = field(default_factory=dict)  # kid -> jwt.PyJWK for a file

    @classmethod
    def load(cls, issuer: str, source: str) -> "TrustedIssuer":
        import jwt

        me = cls(issuer, source)
        if source.startswith(("https://", "http://")):
            me._client = jwt.PyJWKClient(source, cache_jwk_set=True, lifespan=300, timeout=10)
            return me
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read the JWKS of issuer {issuer}: {exc.strerror or exc}", file=str(path)) from None
        except ValueError:
            raise InputError(f"the JWKS of issuer {issuer} is not JSON", file=str(path)) from None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list) or not keys:
            raise InputError(f"the JWKS of issuer {issuer} holds no keys (expected {{\"keys\": [...]}})", file=str(path))
        for i, k in enumerate(keys):
            if not isinstance(k, dict) or not k.get("kid"):
                raise InputError(f"key {i} of the JWKS of issuer {issuer} has no kid", file=str(path))
            if k.get("kty") not in ("RSA", "EC"):
                raise InputError(f"key {k['kid']} of issuer {issuer}: only RSA and EC keys are trusted", file=str(path))
            if "d" in k:
                raise InputError(f"key {k['kid']} of issuer {issuer} is a private key; trust its public key only", file=str(path))
            try:
                me._keys[str(k["kid"])] = jwt.PyJWK(k)
            except jwt.exceptions.PyJWKError as exc:
                raise InputError(f"key {k['kid']} of issuer {issuer} cannot be read ({exc})", file=str(path)) from None
        return me

    def key(self, kid: str) -> Any:
        import jwt

        if self._client is None:
            found = self._keys.get(kid)
            if found is None:
                raise AuthFailure(f"unknown kid for issuer {self.issuer}")
            return found.key
        try:
            return self._client.get_signing_key(kid).key
        except jwt.exceptions.PyJWKClientConnectionError:
            raise AuthFailure(f"the JWKS of issuer {self.issuer} cannot be fetched") from None
        except jwt.exceptions.PyJWKClientError:
            raise AuthFailure(f"unknown kid for issuer {self.issuer}") from None


def parse_trust(values: list[str]) -> dict[str, TrustedIssuer]:
    """``ISSUER=JWKS_URL_OR_FILE`` (repeatable) to trusted issuers."""
    out: dict[str, TrustedIssuer] = {}
    for value in values:
        issuer, sep, source = value.partition("=")
        # an issuer is often a URL with its own "=" only in a query: split on the first "=" after the scheme
        if not sep or not issuer.strip() or not source.strip():
            raise InputError(f"--trust {value!r} must be ISSUER=JWKS_URL_OR_FILE")
        out[issuer.strip()] = TrustedIssuer.load(issuer.strip(), source.strip())
    return out


class JwtVerifier:
    """Verifies CDS clients' JWTs against the trusted issuers (see the module docstring)."""

    def __init__(
        self,
        issuers: dict[str, TrustedIssuer],
        *,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
    ) -> None:
        bad = [a for a in algorithms if a not in DEFAULT_ALGORITHMS + OPTIONAL_ALGORITHMS]
        if bad:
            raise InputError(
                f"JWT algorithm(s) {', '.join(bad)} cannot be allowed; allowed are "
                f"{', '.join(DEFAULT_ALGORITHMS + OPTIONAL_ALGORITHMS)}"
            )
        self.issuers = issuers
        self.algorithms = tuple(dict.fromkeys(algorithms))
        self.leeway = leeway
        self._seen: dict[tuple[str, str], float] = {}  # (iss, jti) -> when it may be forgotten
        self._lock = threading.Lock()

    def verify(self, authorization: str | None, audience: str | list[str]) -> dict[str, Any]:
        """The verified claims of the ``Authorization`` header's token, or :class:`AuthFailure`."""
        import jwt

        if not authorization:
            raise AuthFailure("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailure("the Authorization header is not 'Bearer <JWT>'")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.exceptions.PyJWTError:
            raise AuthFailure("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
            raise AuthFailure(f"JWT algorithm {alg!r} is refused (asymmetric signatures only)")
        if alg not in self.algorithms:
            raise AuthFailure(f"JWT algorithm {alg} is not allowed (allowed: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("the JWT header has no kid")
        iss = unverified.get("iss")
        trusted = self.issuers.get(iss) if isinstance(iss, str) else None
        if trusted is None:
            raise AuthFailure("the JWT issuer is not trusted")
        key = trusted.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": isinstance(audience, str)},
            )
        except jwt.exceptions.ExpiredSignatureError:
            raise AuthFailure("the JWT has expired") from None
        except jwt.exceptions.InvalidAudienceError:
            raise AuthFailure("the JWT audience is not this service's URL") from None
        except jwt.exceptions.ImmatureSignatureError:
            raise AuthFailure("the JWT is not valid yet (iat or nbf in the future)") from None
        except jwt.exceptions.MissingRequiredClaimError as exc:
            raise AuthFailure(f"the JWT has no {exc.claim} claim") from None
        except jwt.exceptions.InvalidSignatureError:
            raise AuthFailure("the JWT signature does not verify") from None
        except jwt.exceptions.PyJWTError as exc:
            raise AuthFailure(f"the JWT is invalid ({type(exc).__name__})") from None
        now = time.time()
        exp = float(claims["exp"])
        if exp - now > MAX_LIFETIME + self.leeway:
            raise AuthFailure(f"the JWT expires more than {MAX_LIFETIME // 60} minutes ahead")
        jti = str(claims["jti"])
        with self._lock:
            for k, forget in list(self._seen.items()):
                if forget < now:
                    del self._seen[k]
            if (iss, jti) in self._seen:
                raise AuthFailure("the JWT was used before (jti replayed)")
            self._seen[(str(iss), jti)] = exp + self.leeway
        return claims
