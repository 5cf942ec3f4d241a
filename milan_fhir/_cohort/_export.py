"""FHIR Bulk Data export (``$export``): kick off, poll, download the NDJSON files (streaming to disk).

Follows the FHIR Bulk Data Access IG (v2): ``GET [base]/$export`` (system level) or
``GET [base]/Group/[id]/$export`` with ``_type`` limited to the resource types the rules read,
``Accept: application/fhir+json`` and ``Prefer: respond-async``; the server answers ``202 Accepted`` with a
``Content-Location`` status URL, polled until it answers ``200`` with the manifest. ``Retry-After`` (seconds or
an HTTP date) is honoured, capped at ``poll_cap`` seconds; without it the wait grows from 1 s to the cap. The
output files are downloaded one by one, streamed to disk (never held in memory), each to a temporary name renamed
when complete; the manifest's error files (OperationOutcomes) are downloaded beside them. File names come from
the types asked for (``Patient-1.ndjson``), never from the server's text, and are checked to stay in the folder.
Files on the server's own origin get the token (unless the manifest's ``requiresAccessToken`` is false); files
elsewhere never do, and neither does a redirect off the origin.

A server cannot fill the disk or hold the run forever: the downloads stop with a clear error when their total
passes ``max_bytes`` (no cap unless given), when the disk holding them would keep less than ``min_free_bytes``
free (1 GiB by default), or when the whole export, downloads included, takes longer than ``timeout``. The file
being written is removed (never left half-written under its final name).
"""

from __future__ import annotations

import email.utils
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson
import requests

from .. import _sink
from .._client import FhirClient
from ..errors import FhirConnectionError, FhirServerError, InputError, printable

__all__ = ["DEFAULT_MIN_FREE_BYTES", "EXPORT_TYPES", "ExportResult", "bulk_export", "parse_retry_after"]

#: the resource types the rules read
EXPORT_TYPES = ("Patient", "Condition", "Observation", "Procedure")
_CHUNK = 1 << 20
#: how often (bytes written) the free space of the download disk is checked
_FREE_CHECK_EVERY = 64 << 20
#: free space the downloads leave on their disk unless told otherwise
DEFAULT_MIN_FREE_BYTES = 1 << 30


@dataclass
class _Budget:
    """What the downloads of one export may still use: bytes (``None``: no cap), disk reserve, wall-clock end."""

    max_bytes: int | None
    min_free_bytes: int
    deadline: float  # time.monotonic()
    used: int = 0
    _since_check: int = 0

    def spend(self, n: int, dest: Path, url_base: str) -> None:
        self.used += n
        self._since_check += n
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise FhirServerError(
                f"export: the downloaded files pass the cap of {self.max_bytes:,} bytes while writing {dest.name}; "
                f"stopped (raise the cap with max_bytes / --max-download-bytes if the export is really this large)",
                url=url_base)
        if time.monotonic() > self.deadline:
            raise FhirServerError(f"export: the downloads did not finish within the export's time limit "
                                  f"(stopped while writing {dest.name})", url=url_base)
        if self._since_check >= _FREE_CHECK_EVERY:
            self._since_check = 0
            self.check_free(dest, url_base)

    def check_free(self, dest: Path, url_base: str) -> None:
        try:
            free = shutil.disk_usage(dest.parent).free
        except OSError:
            return
        if free < self.min_free_bytes:
            raise FhirServerError(
                f"export: stopped while writing {dest.name}: only {free:,} bytes would stay free on the disk of "
                f"{dest.parent} (the downloads keep at least {self.min_free_bytes:,} free)", url=url_base)


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # where the server keeps the files (output then error)
    error_files: list[Path] = field(default_factory=list)
    status_url: str = ""
    transaction_time: str | None = None
    polls: int = 0
    seconds: float = 0.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _log(message: str) -> None:
    print(f"milan-fhir cohort: {message}", file=sys.stderr)


def bulk_export(
    client: FhirClient,
    dest: str | os.PathLike[str],
    *,
    group: str | None = None,
    types: tuple[str, ...] = EXPORT_TYPES,
    poll_cap: float = 30.0,
    timeout: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = _log,
    max_bytes: int | None = None,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
) -> ExportResult:
    """Run a Bulk Data export on ``client``'s server and download its files into ``dest``.

    ``timeout`` bounds the whole export (polling and downloads); ``max_bytes`` caps the total downloaded (output
    and error files); ``min_free_bytes`` is the free space the downloads leave on their disk. Passing any of them
    stops the run with :class:`~milan_fhir.errors.FhirServerError`.
    """
    if max_bytes is not None and max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    t0 = time.monotonic()
    out = _sink.ensure_dir(dest)
    _sink.clean_stale(out)
    path = f"Group/{group}/$export" if group else "$export"
    headers = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
    resp = client.request("GET", path, params={"_type": ",".join(types)}, headers=headers)
    if resp.status_code != 202 or not resp.headers.get("Content-Location"):
        raise FhirServerError(
            f"{path}: the server did not start an asynchronous export (expected 202 Accepted with a "
            f"Content-Location header, got {resp.status_code})",
            status=resp.status_code, url=client.base_url,
        )
    status_url = resp.headers["Content-Location"]
    result = ExportResult(status_url=status_url)
    log(f"export started ({path}, _type={','.join(types)}); polling its status")
    wait = 1.0
    while True:
        resp = client.request("GET", status_url, headers={"Accept": "application/json"})
        result.polls += 1
        if resp.status_code == 200:
            break
        if resp.status_code != 202:
            raise FhirServerError(f"export status: unexpected answer {resp.status_code}", status=resp.status_code,
                                  url=client.base_url)
        elapsed = time.monotonic() - t0
        if elapsed > timeout:
            raise FhirServerError(f"the export did not finish within {timeout:g} s (status URL {status_url})",
                                  url=client.base_url)
        asked = parse_retry_after(resp.headers.get("Retry-After"))
        delay = min(poll_cap, asked if asked is not None else wait)
        wait = min(poll_cap, wait * 2)
        progress = resp.headers.get("X-Progress")
        if progress:
            log(f"export in progress: {progress}")
        sleep(max(0.0, min(delay, timeout - elapsed)))
    try:
        manifest = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise FhirServerError("export: the completed status answer is not a JSON manifest", url=client.base_url) from None
    if not isinstance(manifest, dict):
        raise FhirServerError("export: the completed status answer is not a JSON manifest", url=client.base_url)
    result.transaction_time = manifest.get("transactionTime")
    requires_token = manifest.get("requiresAccessToken", True) is not False
    budget = _Budget(max_bytes, max(0, min_free_bytes), t0 + timeout)
    outputs = _items(manifest, "output", client)
    errors = _items(manifest, "error", client)
    counts: dict[str, int] = {}
    for item in outputs:
        # the file name comes from our whitelist, never from the server: a type we did not ask for is refused
        rtype = item.get("type")
        if rtype not in types:
            raise FhirServerError(
                f"export: the manifest lists an output of type {printable(str(rtype))[:80]!r}, which was not asked for "
                f"(asked: {', '.join(types)}); refusing to download it", url=client.base_url)
        counts[rtype] = counts.get(rtype, 0) + 1
        result.urls.append(item["url"])
        result.files.append(_download(client, item["url"], _under(out, f"{rtype}-{counts[rtype]}.ndjson"),
                                      requires_token, budget))
    if errors:
        err_dir = _sink.ensure_dir(out.parent / f"{out.name}-errors")
        for i, item in enumerate(errors, 1):
            result.urls.append(item["url"])
            result.error_files.append(_download(client, item["url"], _under(err_dir, f"OperationOutcome-{i}.ndjson"),
                                                requires_token, budget))
        log(f"the server reported export errors: see {err_dir}")
    try:  # the files are ours now: let the server clean up (optional in the IG; failures do not matter)
        client.request("DELETE", status_url)
    except FhirServerError:
        pass
    result.seconds = time.monotonic() - t0
    log(f"export downloaded: {len(result.files)} files in {result.seconds:.1f} s")
    return result


def _items(manifest: dict[str, Any], key: str, client: FhirClient) -> list[dict[str, Any]]:
    items = manifest.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("url"), str) for i in items):
        raise FhirServerError(f"export: the manifest's {key!r} is not a list of {{type, url}}", url=client.base_url)
    for i in items:
        if not i["url"].startswith(("http://", "https://")):
            raise FhirServerError(f"export: a manifest {key} URL is not http(s)", url=client.base_url)
    return items


def _under(folder: Path, name: str) -> Path:
    """``folder/name``, checked to stay in ``folder`` (names come from our whitelist; this is the second lock)."""
    dest = folder / name
    if Path(name).name != name or name.startswith(".") or dest.resolve().parent != folder.resolve():
        raise InputError("an export file name would leave the export folder", file=str(dest))
    return dest


class _NoAuth(requests.auth.AuthBase):
    """No credentials: for export files on another origin, or when the manifest says none are needed."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        return r


def _download(client: FhirClient, url: str, dest: Path, requires_token: bool = True,
              budget: _Budget | None = None) -> Path:
    """Stream one file to ``dest`` (:mod:`milan_fhir._sink`: temporary name, fsync, rename, private mode).

    Export files may live elsewhere (object storage): a URL on another origin is fetched as it is, without the
    token; redirects are followed, and requests drops the Authorization header whenever one leaves the origin.
    """
    # FhirClient.request reads whole bodies; for files of any size we stream with the client's own session
    # (same TLS settings and retries).
    session = client._safe  # noqa: SLF001 - see above
    same_origin = _origin(url) == _origin(client.base_url)
    auth = None if (same_origin and requires_token) else _NoAuth()
    if budget is not None:
        budget.check_free(dest, client.base_url)
    try:
        with session.get(url, headers={"Accept": "application/fhir+ndjson"}, stream=True, auth=auth,
                         verify=client.verify, allow_redirects=True, timeout=(10.0, client.timeout)) as resp:
            if resp.status_code >= 400:
                raise FhirServerError("download of an export file failed", status=resp.status_code,
                                      url=client.base_url)
            with _sink.atomic_open(dest) as fh:
                for block in resp.iter_content(_CHUNK):
                    if budget is not None:
                        budget.spend(len(block), dest, client.base_url)
                    fh.write(block)
    except requests.RequestException as exc:
        raise FhirConnectionError(f"download of an export file failed: {type(exc).__name__}",
                                  url=client.base_url) from None
    return dest


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower() + f":{parts.port or ''}"
