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
from ..errors import FhirConflictError, FhirProtocolError, FhirServerError, printable
from ._client import FhirClient, entry_error
from ._fetch import is_ours, pick_current

__all__ = ["WriteResult", "write_back", "find_current", "upload_definitions", "validate_resource",
           "check_transaction_response"]

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
    note: str | None = None  # something the caller should hear about (a create race the server did not stop)


def find_current(client: FhirClient, patient: str, rule_set: str) -> dict[str, Any] | None:
    """The current RiskAssessment of (patient, rule set) on the server: by identifier, keeping only resources
    whose identifier and subject are ours; then by its deterministic id (a server that ignores the identifier
    search parameter still finds it). None if there is none."""
    pid = patient.split("/", 1)[1] if patient.startswith("Patient/") else patient
    value = _fhir.identifier_value(f"Patient/{pid}", rule_set)
    found = list(client.search("RiskAssessment", {"identifier": f"{_fhir.IDENTIFIER_SYSTEM}|{value}"}))
    current = pick_current(found, pid, rule_set)
    if current is None:
        by_id = client.read_or_none("RiskAssessment", _fhir.resource_id(f"Patient/{pid}", rule_set))
        if by_id is not None and is_ours(by_id, pid, rule_set):
            current = by_id
        elif by_id is not None:
            raise FhirServerError(
                f"RiskAssessment/{_fhir.resource_id(f'Patient/{pid}', rule_set)} exists on the server but is not the "
                f"assessment of {patient} ({rule_set}): its identifier or subject differ; nothing written",
                url=client.base_url,
            )
    return current


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
    looked up first; one whose identifier or subject is not ours is never used. ``tag``: a ``(system, code)``
    added to ``meta.tag`` of what is written. Raises :class:`~milan_fhir.errors.FhirConflictError` when other
    writers kept winning for ``max_attempts`` tries, :class:`~milan_fhir.errors.FhirProtocolError` when the
    server's answer does not confirm the write (then nothing is reported written).
    """
    if software_version is None:
        from .._runtime import software_version as _sv

        software_version = _sv()
    before = client.request_count
    pid = ev.patient.split("/", 1)[1] if ev.patient.startswith("Patient/") else ev.patient
    new_ra = _fhir.risk_assessment(ev, mappings)
    fp = _fhir.read_fingerprint(new_ra) or _fhir.fingerprint(ev, mappings)
    if current is _UNSET or (current is not None and not is_ours(current, pid, ev.rule_set)):
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
        elif _if_none_match_ok(client):
            ra_request["ifNoneMatch"] = "*"  # a first create: refused (412) if another writer created it meanwhile
        entries = [
            {"fullUrl": f"RiskAssessment/{ra['id']}", "resource": ra, "request": ra_request},
            {"fullUrl": f"Provenance/{prov['id']}", "resource": prov, "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"}},
        ]
        try:
            response = client.transaction(entries, idempotent=True)
            for e in response.get("entry") or []:
                if isinstance(e, dict):
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
            if current is None and "ifNoneMatch" in ra_request and _refuses_if_none_match(exc):
                # this server does not take If-None-Match on a PUT: remember it, and detect races afterwards instead
                client.no_if_none_match = True  # per-client capability memo
                attempts -= 1
                continue
            raise
        ra_loc, prov_loc = _confirmed(response, ra["id"], prov["id"], ev.patient, client.base_url)
        written_version = ra_loc.rsplit("/", 1)[-1]
        note = None
        if nxt is not None and written_version != nxt and written_version.isdigit():
            if current is not None:
                raise FhirProtocolError(
                    f"write-back of {ev.patient}: the server wrote version {written_version} although If-Match "
                    f"asked for an update of version {version}; the Provenance names version {nxt}",
                    url=client.base_url,
                )
            # a first create that landed on a RiskAssessment another writer created meanwhile: the server does
            # not enforce If-None-Match. Our content is the current version; its Provenance is moved onto it.
            prov_loc = _repair_provenance(client, ev, ra["id"], written_version, fp, prov, software_version, tag)
            note = (f"another writer created this RiskAssessment first (the server did not refuse the second create);"
                    f" version {written_version} is ours, with its Provenance")
            log.warning("write-back of %s: %s", ev.patient, note)
        action: Literal["created", "updated"] = "created" if current is None else "updated"
        return WriteResult(ev.patient, ev.rule_set, action, ra_loc, prov_loc, fp, attempts,
                           client.request_count - before, note)


def _if_none_match_ok(client: FhirClient) -> bool:
    return not client.no_if_none_match


def _refuses_if_none_match(exc: FhirServerError) -> bool:
    text = (" ".join(exc.diagnostics) + str(exc)).lower()
    return exc.status in (400, 422, 501) and ("if-none-match" in text or "ifnonematch" in text)


def _confirmed(response: Any, ra_id: str, prov_id: str, patient: str, base_url: str) -> tuple[str, str]:
    """The RiskAssessment and Provenance locations (``Type/id/_history/v``) the server reports, after checking
    that its answer is a transaction-response confirming both writes; else :class:`FhirProtocolError`."""
    what = f"write-back of {patient}: the server's answer does not confirm the write"

    def fail(why: str) -> FhirProtocolError:
        return FhirProtocolError(f"{what} ({why}); it is not reported written: check the server", url=base_url)

    if not isinstance(response, dict) or response.get("resourceType") != "Bundle":
        raise fail("not a Bundle")
    if response.get("type") != "transaction-response":
        raise fail(f"Bundle.type is {printable(str(response.get('type')))!r}, not 'transaction-response'")
    entries = response.get("entry")
    if not isinstance(entries, list) or len(entries) != 2:
        raise fail(f"{len(entries) if isinstance(entries, list) else 0} entries for the 2 sent")
    out = []
    for entry, (rtype, rid) in zip(entries, (("RiskAssessment", ra_id), ("Provenance", prov_id))):
        resp = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(resp, dict):
            raise fail(f"no response for the {rtype}")
        status = str(resp.get("status") or "").split(" ")[0]
        if status not in ("200", "201"):
            raise fail(f"status {printable(status or 'missing')!r} for the {rtype}")
        loc = _short(str(resp.get("location") or ""))
        parts = loc.split("/")
        if len(parts) != 4 or parts[0] != rtype or parts[1] != rid or parts[2] != "_history" or not parts[3]:
            raise fail(f"the {rtype} location {printable(loc or 'missing')!r} is not {rtype}/{rid}/_history/<version>")
        out.append(loc)
    return out[0], out[1]


def _repair_provenance(
    client: FhirClient, ev: Evaluation, ra_id: str, version: str, fp: str, wrong: dict[str, Any],
    software_version: str, tag: tuple[str, str] | None,
) -> str:
    """Move our Provenance onto the version actually written (one transaction: the right one written, the one
    naming another writer's version deleted)."""
    prov = _fhir.provenance(ev, f"RiskAssessment/{ra_id}/_history/{version}", software_version=software_version)
    prov["id"] = _provenance_id(ra_id, version, fp)
    _tagged(prov, tag)
    response = client.transaction([
        {"fullUrl": f"Provenance/{prov['id']}", "resource": prov,
         "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"}},
        {"request": {"method": "DELETE", "url": f"Provenance/{wrong['id']}"}},
    ], idempotent=True)
    entries = response.get("entry") if isinstance(response, dict) else None
    if not isinstance(entries, list) or not entries:
        raise FhirProtocolError(f"write-back of {ev.patient}: the Provenance repair was not confirmed", url=client.base_url)
    for e in entries:
        err = entry_error(e, f"Provenance repair of {ev.patient}", client.base_url) if isinstance(e, dict) else None
        if err is not None:
            raise err
    return _short(str(((entries[0] or {}).get("response") or {}).get("location") or f"Provenance/{prov['id']}"))


def check_transaction_response(response: Any, sent: int, what: str, base_url: str) -> None:
    """A transaction-response Bundle with one entry per entry sent, each with a 2xx or a typed error status;
    else :class:`FhirProtocolError` (an empty 200, a 204, ``{}``, an OperationOutcome are no confirmation)."""
    if not isinstance(response, dict) or response.get("resourceType") != "Bundle" \
            or response.get("type") != "transaction-response":
        kind = response.get("resourceType") if isinstance(response, dict) and response else "an empty answer"
        raise FhirProtocolError(f"{what}: the server answered {printable(str(kind))}, not a transaction-response; "
                                "nothing is reported written", url=base_url)
    entries = response.get("entry")
    if not isinstance(entries, list) or len(entries) != sent:
        raise FhirProtocolError(f"{what}: the transaction-response has {len(entries) if isinstance(entries, list) else 0}"
                                f" entries for the {sent} sent; nothing is reported written", url=base_url)
    for e in entries:
        status = str(((e.get("response") if isinstance(e, dict) else None) or {}).get("status") or "").split(" ")[0]
        if not status.isdigit():
            raise FhirProtocolError(f"{what}: an entry of the transaction-response has no status; nothing is "
                                    "reported written", url=base_url)


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
    check_transaction_response(response, len(entries), "upload of the StructureDefinitions", client.base_url)
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
