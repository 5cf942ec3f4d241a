"""Writing a RiskAssessment and its Provenance back to a FHIR server, safely (criteria.md §5).

- One RiskAssessment per (patient, rule set), found by its deterministic identifier; its history is the server's
  version history.
- Unchanged inputs write nothing: the input fingerprint of the current RiskAssessment (extension
  ``input-fingerprint``) is compared with the new one.
- A changed or new assessment is written with its Provenance in ONE transaction (all or nothing):
  ``PUT RiskAssessment/{id}`` with ``If-Match: W/"<version read>"`` (so an update made meanwhile by another
  writer is never overwritten unseen), and ``PUT Provenance/{id}`` under a deterministic id (so sending the
  transaction twice cannot add a second Provenance). When no RiskAssessment exists yet it is created at its
  deterministic id, so concurrent first writers meet on the same resource instead of creating two.
- On 409/412 (someone else wrote first) the current version is read again and the decision is taken again, a
  bounded number of times: a concurrent writer with the same inputs makes our write unnecessary; one with other
  inputs gets our update on top of its version, never lost.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from .._domain import Evaluation
from .._mappings import Mappings
from .._writers import fhir as _fhir
from ..errors import FhirConflictError, FhirServerError
from ._client import FhirClient, entry_error
from ._fetch import pick_current

__all__ = ["WriteResult", "write_back", "find_current", "upload_definitions", "validate_resource"]

log = logging.getLogger("milan_fhir.client")

MAX_ATTEMPTS = 5
_UNSET: Any = object()


@dataclass(frozen=True)
class WriteResult:
    """What a write-back did."""

    patient: str
    rule_set: str
    action: Literal["created", "updated", "unchanged"]
    risk_assessment: str  # "RiskAssessment/id/_history/version" (the current one when unchanged)
    provenance: str | None  # "Provenance/id/_history/version" when written
    fingerprint: str
    attempts: int  # transactions tried (0 when unchanged from the start)
    requests: int  # HTTP requests this write took (reads included)


def find_current(client: FhirClient, patient: str, rule_set: str) -> dict[str, Any] | None:
    """The current RiskAssessment of (patient, rule set) on the server, by identifier (None if none)."""
    pid = patient.split("/", 1)[1] if patient.startswith("Patient/") else patient
    value = _fhir.identifier_value(f"Patient/{pid}", rule_set)
    found = list(client.search("RiskAssessment", {"identifier": f"{_fhir.IDENTIFIER_SYSTEM}|{value}"}))
    return pick_current(found, pid, rule_set)


def _version(resource: dict[str, Any] | None) -> str | None:
    if not resource:
        return None
    v = (resource.get("meta") or {}).get("versionId")
    return str(v) if v is not None else None


def _next_version(version: str | None) -> str | None:
    if version is None:
        return "1"
    return str(int(version) + 1) if version.isdigit() else None


def _provenance_id(ra_id: str, next_version: str | None, fingerprint: str) -> str:
    digest = hashlib.sha256(f"{ra_id}|{next_version}|{fingerprint}".encode()).hexdigest()
    return f"milan-prov-{digest[:40]}"


def _tagged(resource: dict[str, Any], tag: tuple[str, str] | None) -> dict[str, Any]:
    if tag is None:
        return resource
    meta = resource.setdefault("meta", {})
    tags = meta.setdefault("tag", [])
    coding = {"system": tag[0], "code": tag[1]}
    if coding not in tags:
        tags.append(coding)
    return resource


def write_back(
    client: FhirClient,
    ev: Evaluation,
    mappings: Mappings,
    *,
    current: dict[str, Any] | None = _UNSET,
    software_version: str | None = None,
    tag: tuple[str, str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> WriteResult:
    """Write ``ev`` as the RiskAssessment of its patient and rule set, with a Provenance, in one transaction.

    ``current``: the RiskAssessment already read (e.g. by the fetch batch; None = known absent); omitted, it is
    looked up first. ``tag``: a ``(system, code)`` added to ``meta.tag`` of what is written. Raises
    :class:`~milan_fhir.errors.FhirConflictError` when other writers kept winning for ``max_attempts`` tries.
    """
    if software_version is None:
        from .._runtime import software_version as _sv

        software_version = _sv()
    before = client.request_count
    new_ra = _fhir.risk_assessment(ev, mappings)
    fp = _fhir.read_fingerprint(new_ra) or _fhir.fingerprint(ev, mappings)
    if current is _UNSET:
        current = find_current(client, ev.patient, ev.rule_set)
    attempts = 0
    while True:
        version = _version(current)
        if current is not None and _fhir.read_fingerprint(current) == fp:
            return WriteResult(
                ev.patient, ev.rule_set, "unchanged", f"RiskAssessment/{current['id']}/_history/{version}", None, fp,
                attempts, client.request_count - before,
            )
        if attempts >= max_attempts:
            raise FhirConflictError(
                f"writing the RiskAssessment of {ev.patient} ({ev.rule_set}): other writers kept updating it; "
                f"gave up after {attempts} attempts",
                status=412,
                url=client.base_url,
            )
        attempts += 1
        ra = dict(new_ra)
        ra["id"] = current["id"] if current is not None else new_ra["id"]
        nxt = _next_version(version)
        target = f"RiskAssessment/{ra['id']}" + (f"/_history/{nxt}" if nxt else "")
        prov = _fhir.provenance(ev, target, software_version=software_version)
        prov["id"] = _provenance_id(ra["id"], nxt, fp)
        _tagged(ra, tag)
        _tagged(prov, tag)
        ra_request: dict[str, Any] = {"method": "PUT", "url": f"RiskAssessment/{ra['id']}"}
        if version is not None:
            ra_request["ifMatch"] = f'W/"{version}"'
        entries = [
            {"fullUrl": f"RiskAssessment/{ra['id']}", "resource": ra, "request": ra_request},
            {"fullUrl": f"Provenance/{prov['id']}", "resource": prov, "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"}},
        ]
        try:
            response = client.transaction(entries, idempotent=True)
            for e in response.get("entry") or []:
                err = entry_error(e, f"write-back of {ev.patient}", client.base_url)
                if err is not None:
                    raise err
        except FhirConflictError as exc:
            log.info("write-back attempt %d lost a race (%s); reading the current version again", attempts, exc.status)
            time.sleep(min(0.05 * attempts, 0.5))
            current = find_current(client, ev.patient, ev.rule_set)
            continue
        except FhirServerError as exc:
            if current is None and _is_create_race(exc):
                # two first writers created the same id at once: the database refused the second
                current = find_current(client, ev.patient, ev.rule_set)
                continue
            raise
        locations = [str((e.get("response") or {}).get("location", "")) for e in response.get("entry") or []]
        ra_loc = _short(locations[0]) if locations else target
        prov_loc = _short(locations[1]) if len(locations) > 1 else f"Provenance/{prov['id']}"
        written_version = ra_loc.rsplit("/", 1)[-1] if "/_history/" in ra_loc else nxt
        if current is None and written_version not in (None, "1"):
            # our "create" landed on a RiskAssessment another writer created meanwhile (no If-Match possible on a
            # create): harmless (same id, newer content), but say so
            log.info("write-back of %s created version %s: another writer created it first", ev.patient, written_version)
        action: Literal["created", "updated"] = "created" if current is None else "updated"
        return WriteResult(ev.patient, ev.rule_set, action, ra_loc, prov_loc, fp, attempts, client.request_count - before)


def _short(location: str) -> str:
    """``http://host/fhir/RiskAssessment/x/_history/2`` -> ``RiskAssessment/x/_history/2``."""
    parts = location.split("/")
    for i, p in enumerate(parts):
        if p in ("RiskAssessment", "Provenance") and i + 1 < len(parts):
            return "/".join(parts[i:])
    return location


def _is_create_race(exc: FhirServerError) -> bool:
    text = " ".join(exc.diagnostics).lower() + str(exc).lower()
    return exc.status in (409, 412, 500) and any(
        w in text for w in ("constraint", "duplicate", "already exists", "unique", "conflict")
    )


# ---------------------------------------------------------------------------------------------- conformance


def upload_definitions(client: FhirClient, *, tag: tuple[str, str] | None = None) -> list[str]:
    """PUT the project's StructureDefinitions and CodeSystems (one transaction); return ``Type/id`` of each."""
    resources = [_tagged(dict(r), tag) for r in _fhir.conformance_resources()]
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    response = client.transaction(entries, idempotent=True)
    for e in response.get("entry") or []:
        err = entry_error(e, "upload of the StructureDefinitions", client.base_url)
        if err is not None:
            raise err
    return [f"{r['resourceType']}/{r['id']}" for r in resources]


def validate_resource(client: FhirClient, resource: dict[str, Any], *, profile: str | None = None) -> list[dict]:
    """``$validate`` a resource on the server; return the OperationOutcome issues (errors and warnings alike).

    ``profile``: validate against this profile too; it is added to ``meta.profile`` of the copy sent (HAPI FHIR
    8.8 cannot resolve the operation's ``profile`` parameter, while ``meta.profile`` works everywhere). A server
    answering a failed validation with 400/412/422 still gives its issues back; only a server that cannot
    validate at all raises.
    """
    resource = dict(resource)
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if profile:
        meta["profile"] = list(dict.fromkeys([*(meta.get("profile") or []), profile]))
    if meta:
        resource["meta"] = meta
    params: dict[str, Any] = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}
    try:
        oo = client.operation(f"{resource['resourceType']}/$validate", method="POST", body=params, idempotent=True)
    except FhirServerError as exc:
        if exc.operation_outcome is not None and exc.status in (400, 412, 422):
            oo = exc.operation_outcome
        else:
            raise
    return list(oo.get("issue") or [])
