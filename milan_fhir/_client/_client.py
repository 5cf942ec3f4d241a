"""A small FHIR R4 REST client: read, search with paging, batch / transaction, typed errors.

Every failure is a :mod:`milan_fhir.errors` exception carrying the server's OperationOutcome diagnostics:
401/403 :class:`FhirAuthError`, 404/410 :class:`FhirNotFoundError`, 409/412 :class:`FhirConflictError`,
400/422 :class:`FhirUnprocessableError`, an unreachable server :class:`FhirConnectionError`, anything else
:class:`FhirServerError`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
import urllib3

from ..errors import (
    FhirAuthError,
    FhirConflictError,
    FhirConnectionError,
    FhirNotFoundError,
    FhirProtocolError,
    FhirServerError,
    FhirUnprocessableError,
    printable,
    register_secret,
    scrub,
)
from ._session import BearerAuth, Deadline, TokenSource, install_redaction, make_session, redact, retries_from_env

__all__ = ["FhirClient", "error_for", "entry_error"]

log = logging.getLogger("milan_fhir.client")

DEFAULT_PAGE_CAP = 200
DEFAULT_MAX_BYTES = 64 << 20
#: attempts after the first when ``retries`` is not given and ``MILAN_FHIR_RETRIES`` is not set
DEFAULT_RETRIES = 3
DEFAULT_MAX_SEARCH_BYTES = 512 << 20
FHIR_JSON = "application/fhir+json"
_READ = 1 << 16


class FhirClient:
    """A FHIR R4 server at ``base_url`` (``https://host/fhir``).

    ``token``: a bearer token, or a callable returning one (called again once after a 401); or ``auth``: any
    :class:`requests.auth.AuthBase` (SMART Backend Services, Basic). ``user:password@`` in ``base_url`` becomes
    Basic auth and is never shown. ``timeout``: seconds to wait for the server to answer (connecting waits at
    most 10 s). ``deadline``: the most seconds one answer may take in all, however slowly it trickles in
    (default ``4 * timeout``). ``max_bytes``: the largest answer read (default 64 MiB); ``max_search_bytes``: the
    most bytes one search may read over all its pages (default 512 MiB). ``retries``: attempts after the first on
    connection errors and 429/502/503/504 (``0``: none; default: the environment variable
    ``MILAN_FHIR_RETRIES`` when set, else 3; an explicit ``retries`` wins over the environment). ``verify``: TLS verification (on, or a CA bundle path), used for every request (an explicit
    CA bundle wins over ``REQUESTS_CA_BUNDLE``). ``page_cap``: the most pages one search may follow before it
    stops with an error. API calls never follow redirects: a 3xx answer is a :class:`FhirProtocolError`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource = None,
        auth: requests.auth.AuthBase | None = None,
        timeout: float = 30,
        deadline: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_search_bytes: int = DEFAULT_MAX_SEARCH_BYTES,
        retries: int | None = None,
        verify: bool | str = True,
        page_cap: int = DEFAULT_PAGE_CAP,
        backoff: float = 0.5,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise FhirConnectionError(
                f"the server address {printable(scrub(str(base_url)))!r} must start with http:// or https://"
            )
        install_redaction()
        base_url, userinfo = _split_userinfo(base_url.rstrip("/"))
        self.base_url = base_url
        self.timeout = timeout
        self.deadline = float(deadline) if deadline is not None else 4.0 * float(timeout)
        self.max_bytes = int(max_bytes)
        self.max_search_bytes = int(max_search_bytes)
        self.retries = max(0, retries) if retries is not None else retries_from_env(DEFAULT_RETRIES)
        self.page_cap = page_cap
        self.verify = verify
        if auth is not None and token:
            raise ValueError("give token or auth, not both")
        if auth is None and token:
            auth = BearerAuth(token)
        if auth is None and userinfo is not None:
            register_secret(userinfo[1])
            auth = requests.auth.HTTPBasicAuth(*userinfo)
        self._auth = auth
        # idempotent requests (reads, search batches, version-aware writes) retry more than other writes
        self._safe = make_session(self.retries, idempotent=True, verify=verify, pool=16)
        self._plain = make_session(self.retries, idempotent=False, verify=verify, pool=16)
        for s in (self._safe, self._plain):
            s.auth = self._auth
        self._lock = threading.Lock()
        self._capabilities: dict[str, Any] | None = None
        #: logical requests sent (retries by urllib3 not counted): for benchmarks and the request budget
        self.request_count = 0

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._safe.close()
        self._plain.close()

    def __enter__(self) -> "FhirClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    # ------------------------------------------------------------------ HTTP
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return self._same_origin(path)
        return f"{self.base_url}/{path.lstrip('/')}"

    def _same_origin(self, url: str) -> str:
        """Links the server hands out (paging) go to our own origin only: the token never leaves it."""
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        if (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc):
            return url
        return urlunsplit((ours.scheme, ours.netloc, theirs.path, theirs.query, theirs.fragment))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one request; return the response, or raise the typed error for a failure status.

        ``idempotent``: whether sending it twice is harmless (default: every method but POST and PATCH).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method not in ("POST", "PATCH")
        session = self._safe if idempotent else self._plain
        url = self.url(path)
        hdrs = {"Cache-Control": "no-cache"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            hdrs["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        if headers:
            hdrs.update(headers)
        refreshed = False
        what = f"{method} {_what(url)}"
        while True:
            with self._lock:
                self.request_count += 1
            started = time.monotonic()
            deadline = Deadline(self.deadline)
            try:
                with deadline:
                    resp = session.request(
                        method, url, params=params, data=data, headers=hdrs, verify=self.verify, stream=True,
                        allow_redirects=False, timeout=(min(10.0, self.timeout), self.timeout),
                    )
                    try:
                        if 300 <= resp.status_code < 400:
                            raise FhirProtocolError(
                                f"{what}: the server answered with a redirect ({resp.status_code}) to "
                                f"{_origin(resp.headers.get('Location'))}; milan-fhir does not follow redirects on "
                                "API calls (check the server address: scheme, host, port, path)",
                                status=resp.status_code,
                                url=self.base_url,
                            )
                        self._read_body(resp, what, started, deadline)
                    finally:
                        resp.close()
            except FhirServerError:
                raise
            except requests.exceptions.RequestException as exc:
                if deadline.fired:
                    raise self._deadline_error(what) from None
                raise self._transport_error(exc, what) from None
            log.debug("%s %s -> %s in %.0f ms", method, url, resp.status_code, (time.monotonic() - started) * 1000)
            if resp.status_code == 401 and getattr(self._auth, "refreshable", False) and not refreshed:
                log.info("the server refused the token (401): asking for a fresh one")
                self._auth.refresh()
                refreshed = True
                continue
            if resp.status_code >= 400:
                raise error_for(resp.status_code, _json_or_none(resp), what, self.base_url)
            return resp

    def _deadline_error(self, what: str) -> FhirConnectionError:
        return FhirConnectionError(f"{what}: the answer took longer than {self.deadline:g} s (deadline); stopped",
                                   url=self.base_url)

    def _transport_error(self, exc: Exception, what: str) -> FhirConnectionError:
        if isinstance(exc, requests.exceptions.SSLError):
            return FhirConnectionError(
                f"TLS verification of {self.base_url} failed ({_reason(exc)}); pass a CA bundle, or verify=False "
                "only for a test server",
                url=self.base_url,
            )
        if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
            return FhirConnectionError(
                f"the FHIR server at {self.base_url} did not answer {what} within {self.timeout:g} s{self._after()}",
                url=self.base_url,
            )
        return FhirConnectionError(
            f"cannot reach the FHIR server at {self.base_url} for {what}{self._after()}: {_reason(exc)}",
            url=self.base_url,
        )

    def _read_body(self, resp: requests.Response, what: str, started: float, deadline: Deadline) -> None:
        """Read the answer into ``resp`` (``resp.content``), at most :attr:`max_bytes`, within :attr:`deadline`
        seconds of ``started``: a server that sends too much, or trickles bytes to keep the read timeout from
        firing, gets a clear error instead of our memory or our time."""
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise FhirProtocolError(
                f"{what}: the answer is {int(length):,} bytes, more than the {self.max_bytes:,} allowed (max_bytes)",
                status=resp.status_code, url=self.base_url,
            )
        parts: list[bytes] = []
        total = 0
        try:
            while True:
                if deadline.expired():
                    raise self._deadline_error(what)
                block = resp.raw.read1(_READ, decode_content=True)
                if not block:
                    break
                total += len(block)
                if total > self.max_bytes:
                    raise FhirProtocolError(
                        f"{what}: the answer is more than the {self.max_bytes:,} bytes allowed (max_bytes); stopped",
                        status=resp.status_code, url=self.base_url,
                    )
                parts.append(block)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.fired:
                raise self._deadline_error(what) from None
            raise FhirConnectionError(
                f"{what}: the connection broke while reading the answer ({_reason(exc)})", url=self.base_url
            ) from None
        resp._content = b"".join(parts)  # noqa: SLF001 - requests' own cache of the body
        resp._content_consumed = True  # noqa: SLF001

    def _after(self) -> str:
        return f" (after {self.retries} retries)" if self.retries else ""

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._json_sized(method, path, **kwargs)[0]

    def _json_sized(self, method: str, path: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
        resp = self.request(method, path, **kwargs)
        data = _json_or_none(resp)
        if data is None:
            if not resp.content:
                return {}, 0
            raise FhirServerError(
                f"{method} {_what(self.url(path))}: the answer is not FHIR JSON "
                f"(Content-Type {resp.headers.get('Content-Type', 'none')})",
                status=resp.status_code,
                url=self.base_url,
            )
        return data, len(resp.content)

    # ------------------------------------------------------------------ REST
    def capabilities(self, *, refresh: bool = False) -> dict[str, Any]:
        """The server's CapabilityStatement (``/metadata``), read once per client."""
        if self._capabilities is None or refresh:
            self._capabilities = self.json("GET", "metadata")
        return self._capabilities

    def supports(self, interaction: str) -> bool:
        """Whether the CapabilityStatement lists a system interaction (``batch``, ``transaction``)."""
        for rest in self.capabilities().get("rest") or []:
            if rest.get("mode", "server") != "server":
                continue
            if any(i.get("code") == interaction for i in rest.get("interaction") or []):
                return True
        return False

    def supports_operation(self, name: str, resource_type: str | None = None) -> bool:
        """Whether an operation (``everything``, ``validate``) is declared, at system level or on the type."""
        name = name.lstrip("$")
        for rest in self.capabilities().get("rest") or []:
            ops = list(rest.get("operation") or [])
            for res in rest.get("resource") or []:
                if resource_type is None or res.get("type") == resource_type:
                    ops.extend(res.get("operation") or [])
            if any(o.get("name") == name or str(o.get("definition", "")).endswith(f"-{name}") for o in ops):
                return True
        return False

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.json("GET", f"{resource_type}/{resource_id}")

    def read_or_none(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        try:
            return self.read(resource_type, resource_id)
        except FhirNotFoundError:
            return None

    def search_page(self, resource_type: str, params: Mapping[str, Any] | list[tuple[str, Any]] | None = None) -> dict:
        """The first page of a search (a searchset Bundle)."""
        return self.json("GET", resource_type, params=params)

    def pages(self, first: dict[str, Any], *, what: str = "search") -> Iterator[dict[str, Any]]:
        """``first`` and every page after it, by ``link[next]``, at most ``page_cap`` pages and
        ``max_search_bytes`` bytes in all (each page is dropped once the caller moved on)."""
        page: dict[str, Any] | None = first
        seen: set[str] = set()
        count = 0
        read = 0
        while page is not None:
            count += 1
            yield page
            nxt = next_link(page)
            if not nxt:
                return
            if nxt in seen:
                raise FhirServerError(f"{what}: the server's next-page link repeats itself", url=self.base_url)
            seen.add(nxt)
            if count >= self.page_cap:
                raise FhirServerError(
                    f"{what}: more than {self.page_cap} pages of results; stopped (raise page_cap to read more)",
                    url=self.base_url,
                )
            page, size = self._json_sized("GET", nxt)
            read += size
            if read > self.max_search_bytes:
                raise FhirProtocolError(
                    f"{what}: the pages of results add up to more than {self.max_search_bytes:,} bytes; stopped "
                    "(raise max_search_bytes to read more)",
                    url=self.base_url,
                )

    def resources(self, first: dict[str, Any], *, what: str = "search", mode: str | None = "match") -> Iterator[dict]:
        """The resources of a searchset and its following pages (``mode`` ``match`` only, unless None)."""
        for page in self.pages(first, what=what):
            for entry in page.get("entry") or []:
                res = entry.get("resource")
                if not isinstance(res, dict):
                    continue
                if mode is not None and (entry.get("search") or {}).get("mode", "match") != mode:
                    continue
                yield res

    def search(
        self, resource_type: str, params: Mapping[str, Any] | list[tuple[str, Any]] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every match of a search, following the paging links."""
        return self.resources(self.search_page(resource_type, params), what=f"{resource_type} search")

    def batch(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Send a ``batch`` Bundle; return the response Bundle (check each entry with :func:`entry_error`).

        A batch of reads only (GET entries) is retried like any read.
        """
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        read_only = all((e.get("request") or {}).get("method", "GET") == "GET" for e in entries)
        return self.json("POST", "", body=bundle, idempotent=read_only)

    def transaction(self, bundle_or_entries: dict[str, Any] | list[dict[str, Any]], *, idempotent: bool = False) -> dict:
        """Send a ``transaction`` Bundle (all or nothing); return the response Bundle.

        ``idempotent=True`` only when sending it twice is harmless (every entry a version-aware or
        deterministic-id ``PUT``): then dropped connections and 502/504 are retried as well.
        """
        if isinstance(bundle_or_entries, list):
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": bundle_or_entries}
        else:
            bundle = dict(bundle_or_entries)
            bundle["type"] = "transaction"
        return self.json("POST", "", body=bundle, idempotent=idempotent)

    def operation(
        self,
        path: str,
        *,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """Call an operation such as ``Patient/1/$everything`` or ``RiskAssessment/$validate``."""
        return self.json(method, path, params=params, body=body, idempotent=idempotent)


# ---------------------------------------------------------------------------------------------- helpers


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def error_for(
    status: int, outcome: Any, what: str, base_url: str | None = None
) -> FhirServerError:
    """The typed error for an HTTP failure status, carrying the OperationOutcome (if the body is one)."""
    oo = outcome if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome" else None
    if status in (401, 403):
        cls: type[FhirServerError] = FhirAuthError
        text = f"{what}: the server refused the credentials" if status == 401 else f"{what}: access denied"
    elif status in (404, 410):
        cls, text = FhirNotFoundError, f"{what}: not found" if status == 404 else f"{what}: deleted"
    elif status in (409, 412):
        cls, text = FhirConflictError, f"{what}: a concurrent update won (version conflict)"
    elif status in (400, 422):
        cls, text = FhirUnprocessableError, f"{what}: the server refused the request"
    elif status in (429, 502, 503, 504):
        cls, text = FhirConnectionError, f"{what}: the server is unavailable or overloaded"
    else:
        cls, text = FhirServerError, f"{what}: the server failed"
    return cls(text, status=status, url=base_url, operation_outcome=oo)


def entry_error(entry: dict[str, Any], what: str, base_url: str | None = None) -> FhirServerError | None:
    """The typed error of one batch-response entry, or None when it succeeded."""
    resp = entry.get("response") or {}
    try:
        status = int(str(resp.get("status", "200")).split()[0])
    except ValueError:
        status = 500
    if status < 400:
        return None
    return error_for(status, resp.get("outcome") or entry.get("resource"), what, base_url)


def _json_or_none(resp: requests.Response) -> dict[str, Any] | None:
    if not resp.content:
        return None
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """``https://user:pw@host/fhir`` -> (``https://host/fhir``, (user, pw)); the credentials never shown."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    from urllib.parse import unquote

    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), (unquote(user), unquote(password))


def _origin(url: str | None) -> str:
    """The scheme and host of a URL, for messages (path, query and credentials left out)."""
    if not url:
        return "nowhere (no Location header)"
    parts = urlsplit(url)
    if not parts.netloc:
        return "another path on the same server"
    host = parts.netloc.rpartition("@")[2]
    return printable(f"{parts.scheme}://{host}")


def _what(url: str) -> str:
    """The request target as it may appear in a message: the path after the base, ids and query redacted."""
    path = urlsplit(url).path
    if path.rstrip("/").endswith("/fhir") or path in ("", "/"):
        return "(batch/transaction)"
    return redact(path.rsplit("/fhir/", 1)[-1] if "/fhir/" in path else path) or "/"


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, in a few words."""
    seen = exc
    while True:
        inner = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if inner is None or inner is seen or not isinstance(inner, BaseException):
            break
        seen = inner
    text = str(seen) or type(seen).__name__
    if "Connection refused" in text or isinstance(seen, ConnectionRefusedError):
        return "connection refused"
    if "RemoteDisconnected" in text or "without response" in text:
        return "the server closed the connection without answering"
    if "Connection reset" in text or isinstance(seen, ConnectionResetError):
        return "the connection was reset"
    if "Max retries exceeded" in text or "too many" in text:
        return "too many failed attempts"
    return redact(text)[:200]
