"""FHIR Bulk Data export (``$export``): kick off, poll, download the NDJSON files (streaming to disk).

Follows the FHIR Bulk Data Access IG (v2): ``GET [base]/$export`` (system level) or
``GET [base]/Group/[id]/$export`` with ``_type`` limited to the resource types the rules read,
``Accept: application/fhir+json`` and ``Prefer: respond-async``; the server answers ``202 Accepted`` with a
``Content-Location`` status URL, polled until it answers ``200`` with the manifest. ``Retry-After`` (seconds or
an HTTP date) is honoured, capped at ``poll_cap`` seconds; without it the wait grows from 1 s to the cap. The
output files are downloaded one by one, streamed to disk (never held in memory), each to a temporary name renamed
when complete; the manifest's error files (OperationOutcomes) are downloaded beside them.
"""

from __future__ import annotations

import email.utils
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import requests

from .._client import FhirClient
from ..errors import FhirConnectionError, FhirServerError, InputError

__all__ = ["EXPORT_TYPES", "ExportResult", "bulk_export", "parse_retry_after"]

#: the resource types the rules read
EXPORT_TYPES = ("Patient", "Condition", "Observation", "Procedure")
_CHUNK = 1 << 20


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
) -> ExportResult:
    """Run a Bulk Data export on ``client``'s server and download its files into ``dest``."""
    t0 = time.monotonic()
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
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
    result.transaction_time = manifest.get("transactionTime")
    outputs = manifest.get("output") or []
    errors = manifest.get("error") or []
    counts: dict[str, int] = {}
    for item in outputs:
        rtype = str(item.get("type") or "Resource")
        counts[rtype] = counts.get(rtype, 0) + 1
        result.urls.append(item["url"])
        result.files.append(_download(client, item["url"], out / f"{rtype}-{counts[rtype]}.ndjson"))
    if errors:
        err_dir = out.parent / f"{out.name}-errors"
        err_dir.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(errors, 1):
            result.urls.append(item["url"])
            result.error_files.append(_download(client, item["url"], err_dir / f"OperationOutcome-{i}.ndjson"))
        log(f"the server reported export errors: see {err_dir}")
    try:  # the files are ours now: let the server clean up (optional in the IG; failures do not matter)
        client.request("DELETE", status_url)
    except FhirServerError:
        pass
    result.seconds = time.monotonic() - t0
    log(f"export downloaded: {len(result.files)} files in {result.seconds:.1f} s")
    return result


def _download(client: FhirClient, url: str, dest: Path) -> Path:
    """Stream one file to ``dest`` (temporary name, renamed when complete)."""
    # FhirClient.request reads whole bodies; for files of any size we stream with the client's own session
    # (same auth, TLS settings, retries, and links kept on the server's origin).
    session = client._safe  # noqa: SLF001 - see above
    target = client.url(url)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with session.get(target, headers={"Accept": "application/fhir+ndjson"}, stream=True,
                         timeout=(10.0, client.timeout)) as resp:
            if resp.status_code >= 400:
                raise FhirServerError("download of an export file failed", status=resp.status_code,
                                      url=client.base_url)
            with open(tmp, "wb") as fh:
                for block in resp.iter_content(_CHUNK):
                    fh.write(block)
    except requests.RequestException as exc:
        raise FhirConnectionError(f"download of an export file failed: {type(exc).__name__}",
                                  url=client.base_url) from None
    except OSError as exc:
        raise InputError(f"cannot write the downloaded file: {exc.strerror or exc}", file=str(tmp)) from None
    os.replace(tmp, dest)
    return dest
