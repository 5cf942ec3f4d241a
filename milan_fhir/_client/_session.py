"""The HTTP layer under :class:`~milan_fhir._client.FhirClient`: requests sessions, retries, auth, redaction.

- Timeouts on every request (connect, read).
- Retries by urllib3's :class:`~urllib3.util.retry.Retry` (no hand-written loop): connection errors, and the
  statuses 429, 502, 503, 504, with exponential backoff, honouring ``Retry-After`` (capped).
  Two retry policies: *idempotent* requests (reads, batches of searches, version-aware or deterministic-id
  writes) are retried on connection errors, dropped connections and the four statuses; other requests are
  retried only where the server cannot have acted on them (connection refused, 429 and 503).
  ``retries=0`` switches retrying off; without an explicit ``retries`` the environment variable
  ``MILAN_FHIR_RETRIES`` sets the count (``0``: off).
- Bearer-token auth from a string or a callable; a callable is called again once on a 401 (token refresh).
- TLS verification on by default.
- :class:`RedactingFilter` keeps tokens and patient data (URL query strings, resource ids) out of the logs of
  milan-fhir and urllib3.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import threading
import time
from typing import Any, Callable, Iterable

import requests
import urllib3

from .. import errors as _errors
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = [
    "RETRY_STATUSES",
    "TokenSource",
    "make_retry",
    "make_session",
    "retries_from_env",
    "BearerAuth",
    "RedactingFilter",
    "install_redaction",
    "Deadline",
]

log = logging.getLogger("milan_fhir.client")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: statuses the server sends before doing any work: safe to retry for any method
_UNPROCESSED_STATUSES = frozenset({429, 503})
#: longest Retry-After honoured, in seconds (a server asking for an hour gets a clear error instead)
RETRY_AFTER_MAX = 60

TokenSource = str | Callable[[], str] | None

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"})
_PLAIN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"})


def retries_from_env(default: int) -> int:
    """The retry count of ``MILAN_FHIR_RETRIES`` (``0`` switches retries off, for tests), else ``default``; used
    only where no explicit count was given."""
    raw = os.environ.get("MILAN_FHIR_RETRIES")
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise _errors.ConfigurationError(f"MILAN_FHIR_RETRIES must be a whole number of retries, 0 or more "
                                         f"(found {_errors.printable(raw[:40])!r}); unset it for the default "
                                         f"of {default}")
    return value


def make_retry(retries: int, *, idempotent: bool, backoff: float = 0.5) -> Retry:
    """The urllib3 retry policy.

    ``idempotent``: the request may be sent again safely even if the server already acted on it (reads,
    batches of searches, ``If-Match`` or deterministic-id ``PUT``s). Then dropped connections (read errors) and
    502/504 are retried too; otherwise only connection errors (nothing was sent) and 429/503.
    """
    if retries <= 0:
        return Retry(total=0, connect=0, read=0, status=0, redirect=0, raise_on_status=False, raise_on_redirect=False)
    kwargs: dict[str, Any] = dict(
        total=retries,
        connect=retries,
        read=retries if idempotent else 0,
        status=retries,
        redirect=0,
        other=0,
        allowed_methods=_IDEMPOTENT_METHODS if idempotent else _PLAIN_METHODS,
        status_forcelist=RETRY_STATUSES if idempotent else _UNPROCESSED_STATUSES,
        backoff_factor=backoff,
        backoff_max=10,
        raise_on_status=False,  # hand the last response back: it becomes a typed error with diagnostics
        raise_on_redirect=False,
        respect_retry_after_header=True,
    )
    if "retry_after_max" in inspect.signature(Retry.__init__).parameters:
        kwargs["retry_after_max"] = RETRY_AFTER_MAX
        return Retry(**kwargs)
    return _CappedRetry(**kwargs)


class _CappedRetry(Retry):
    """Retry-After capped at :data:`RETRY_AFTER_MAX` (for urllib3 releases without ``retry_after_max``)."""

    def parse_retry_after(self, retry_after: str) -> float:  # pragma: no cover - old urllib3 only
        return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX)


class Deadline:
    """A wall-clock limit on each attempt of one request (urllib3 retries start a fresh one), headers included:
    when it passes, the socket of the connection the attempt uses is shut down, so a server trickling bytes (even
    in its headers) cannot hold the request past it. Use as a context manager around the request, in the thread
    that sends it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.conn: Any = None
        self.started = time.monotonic()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def attempt(self, conn: Any) -> None:
        """A (re)try starts on ``conn``: the clock starts again."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self.conn, self.fired, self.started = conn, False, time.monotonic()
            self._timer = threading.Timer(self.seconds, self._fire, args=(conn,))
            self._timer.daemon = True
            self._timer.start()

    def expired(self) -> bool:
        return self.fired or time.monotonic() - self.started > self.seconds

    def _fire(self, conn: Any) -> None:
        with self._lock:
            if conn is not self.conn:
                return
            self.fired = True
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "Deadline":
        _current.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self.conn = None
        _current.deadline = None


_current = threading.local()


class _TrackedPool:
    """Connection pools that tell the running :class:`Deadline` which connection its request uses."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        d = getattr(_current, "deadline", None)
        if d is not None:
            d.attempt(conn)
        return conn


class _TrackedHTTPPool(_TrackedPool, urllib3.HTTPConnectionPool):
    pass


class _TrackedHTTPSPool(_TrackedPool, urllib3.HTTPSConnectionPool):
    pass


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


def make_session(retries: int, *, idempotent: bool, verify: bool | str = True, pool: int = 10) -> requests.Session:
    s = requests.Session()
    adapter = _DeadlineAdapter(max_retries=make_retry(retries, idempotent=idempotent), pool_maxsize=pool)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.verify = verify
    s.headers.update({"Accept": "application/fhir+json", "User-Agent": "milan-fhir"})
    s.trust_env = True
    return s


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; a callable token source is called when no token is cached yet and
    again by :meth:`refresh` (after a 401)."""

    def __init__(self, token: TokenSource) -> None:
        self._source = token
        self._token: str | None = token if isinstance(token, str) else None

    @property
    def refreshable(self) -> bool:
        return callable(self._source)

    def current(self) -> str | None:
        if self._token is None and callable(self._source):
            self._token = str(self._source())
            _errors.register_secret(self._token)
        return self._token

    def refresh(self) -> None:
        if callable(self._source):
            self._token = str(self._source())
            _errors.register_secret(self._token)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.current()
        if token:
            _errors.register_secret(token)
            r.headers["Authorization"] = f"Bearer {token}"
        return r


# ---------------------------------------------------------------------------------------------- redaction

#: every token seen by any BearerAuth in this process: redacted wherever it appears (the registry of
#: :func:`milan_fhir.errors.register_secret`, shared with every error message)
_SECRETS = _errors._SECRETS

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_AUTH_HEADER = re.compile(r"(?i)('?authorization'?\s*[:=]\s*'?)[^,'}\n]+")
_QUERY = re.compile(r"\?[^\s\"']*")
# "/Patient/123", "Patient/123/_history/2": the resource type stays, the id goes
_REF = re.compile(r"\b(?!HTTPS?\b)([A-Z][A-Za-z]+)/(?!_history\b|\$)[A-Za-z0-9\-.]{1,64}")


def redact(text: str) -> str:
    """Text with tokens, query strings and resource ids removed."""
    text = _errors.scrub(text)
    text = _BEARER.sub(r"\1***", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    text = _QUERY.sub("?<redacted>", text)
    text = _REF.sub(r"\1/<id>", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each log record so no token, query string or resource id reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep only its template
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


#: the loggers that see HTTP traffic; other milan-fhir loggers (input warnings naming the resource to fix) stay as
#: they are
_REDACTED_LOGGERS = (
    "milan_fhir.client",
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "urllib3.connection",
    "requests",
)
_installed: set[str] = set()


def install_redaction(names: Iterable[str] = _REDACTED_LOGGERS) -> None:
    """Attach :class:`RedactingFilter` to the loggers that see URLs and headers (once per process)."""
    for name in names:
        if name in _installed:
            continue
        logging.getLogger(name).addFilter(RedactingFilter())
        _installed.add(name)
