"""Uploading FHIR Bundles (the fixtures, a hospital's test data) to a server as transactions.

A ``collection`` (or ``searchset``, ``batch``) Bundle becomes a ``transaction`` with one ``PUT Type/id`` per
resource, so uploading twice is harmless and ids stay as written. References that name another entry by its
``fullUrl`` (``urn:uuid:...`` or an absolute URL) are rewritten to ``Type/id``. ``meta.versionId`` and
``meta.lastUpdated`` are dropped (the server assigns them); a tag can be added to every resource (tests tag
their data with a run id, to purge it afterwards).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..errors import FhirConnectionError, FhirServerError, InputError
from ._client import FhirClient, entry_error

__all__ = ["to_transaction", "upload_bundle", "upload_path", "bundle_files"]


def bundle_files(path: str | Path, exclude: tuple[str, ...] = ()) -> list[Path]:
    """The ``*.json`` Bundles at ``path`` (a file, or a folder read in name order), without those whose name
    matches a pattern of ``exclude`` (shell-style, e.g. ``33-*.json``)."""
    import fnmatch

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.json") if f.is_file()
                       and not any(fnmatch.fnmatch(f.name, pat) for pat in exclude))
        if not files:
            raise InputError("the folder holds no .json Bundle", file=str(p))
        return files
    if not p.exists():
        raise InputError("no such file or folder", file=str(p))
    return [p]


def read_bundle(file: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(file)) from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=str(file)) from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InputError("not a FHIR Bundle", file=str(file), field="resourceType")
    return data


def to_transaction(
    bundle: dict[str, Any], *, tag: tuple[str, str] | None = None, file: str | None = None
) -> dict[str, Any]:
    """A transaction Bundle with a ``PUT Type/id`` per resource (a transaction Bundle keeps its requests)."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InputError("Bundle.entry is not a list", file=file, field="entry")
    full_urls: dict[str, str] = {}
    for i, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict) or not res.get("resourceType"):
            raise InputError("entry without a resource", file=file, field=f"entry[{i}].resource")
        if e.get("fullUrl") and res.get("id"):
            full_urls[str(e["fullUrl"])] = f"{res['resourceType']}/{res['id']}"
    keep_requests = bundle.get("type") == "transaction"
    out_entries = []
    for i, e in enumerate(entries):
        res = _rewrite(copy.deepcopy(e["resource"]), full_urls)
        meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if tag is not None:
            tags = [t for t in meta.get("tag") or [] if (t.get("system"), t.get("code")) != tag]
            meta["tag"] = tags + [{"system": tag[0], "code": tag[1]}]
        if meta:
            res["meta"] = meta
        else:
            res.pop("meta", None)
        request = e.get("request") if keep_requests and isinstance(e.get("request"), dict) else None
        if request is None or (request.get("method") == "POST" and res.get("id")):
            if not res.get("id"):
                raise InputError(
                    f"{res['resourceType']} has no id: it cannot be uploaded with PUT", file=file, field=f"entry[{i}].resource.id"
                )
            request = {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        entry = {"resource": res, "request": request}
        full = e.get("fullUrl")
        if full and not str(full).startswith("urn:") and res.get("id"):
            entry["fullUrl"] = f"{res['resourceType']}/{res['id']}"
        elif full:
            entry["fullUrl"] = full
        out_entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": out_entries}


def _rewrite(node: Any, full_urls: dict[str, str]) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in full_urls:
                node[k] = full_urls[v]
            else:
                _rewrite(v, full_urls)
    elif isinstance(node, list):
        for v in node:
            _rewrite(v, full_urls)
    return node


def upload_bundle(client: FhirClient, bundle: dict[str, Any], *, tag: tuple[str, str] | None = None, file: str | None = None) -> int:
    """Upload one Bundle as a transaction; return the number of resources written."""
    tx = to_transaction(bundle, tag=tag, file=file)
    idempotent = all(e["request"].get("method") == "PUT" for e in tx["entry"])
    try:
        response = client.transaction(tx, idempotent=idempotent)
    except FhirServerError as exc:
        if isinstance(exc, FhirConnectionError) or not file:
            raise
        raise type(exc)(
            f"{file}: the server refused the transaction; nothing of this file was written",
            status=exc.status, url=exc.url, operation_outcome=exc.operation_outcome,
        ) from None
    from ._writeback import check_transaction_response

    check_transaction_response(response, len(tx["entry"]), f"upload of {file or 'Bundle'}", client.base_url)
    for e in response.get("entry") or []:
        err = entry_error(e, f"upload of {file or 'Bundle'}", client.base_url)
        if err is not None:  # a transaction is all or nothing: a failed entry means nothing was written
            raise err
    return len(tx["entry"])


def upload_path(
    client: FhirClient, path: str | Path, *, tag: tuple[str, str] | None = None
) -> Iterator[tuple[Path, int]]:
    """Upload every Bundle at ``path`` (file or folder); yield (file, resources written) as each succeeds."""
    for f in bundle_files(path):
        yield f, upload_bundle(client, read_bundle(f), tag=tag, file=str(f))
