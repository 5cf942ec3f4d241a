"""Reading one patient's data from a FHIR server in few round trips.

The rules read four resource types: the Patient and all of the patient's Observations, Conditions and Procedures.
No search is filtered by code: a Ki-67 may be recognised only by its text (criteria.md §1d), a primary may be
coded as a generic cancer with a morphology extension, and code entries may be prefixes or ranges (OPS 5-504.x)
that a token search cannot express; the adapters decide what each resource is, exactly as for files. Strategies:

- ``batch`` (the default where the server offers batch/transaction): ONE ``batch`` Bundle of per-type
  searches (``Observation?subject=Patient/x``, ``Condition?subject=Patient/x``,
  ``Procedure?subject=Patient/x``, ``Patient/x``), plus the lookup of the current RiskAssessment of
  each rule set by identifier, so that a write-back needs no further read. Further pages, if any, by
  ``link[next]``. An entry that fails is retried on its own as a plain search (the fallback).
- ``everything``: ``Patient/x/$everything`` (paged), filtered here.
- ``searches``: the same searches one by one (servers with neither batch nor ``$everything``).
- ``naive``: the per-type searches one by one without the RiskAssessment lookup (a benchmark baseline only).

``auto`` picks from the server's CapabilityStatement (read once per client): batch, else ``$everything``,
else searches; if the batch itself is refused it falls back to ``$everything``, then to searches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlencode

from .._mappings import Mappings
from .._writers.fhir import IDENTIFIER_SYSTEM, identifier_value, resource_id
from ..errors import FhirAuthError, FhirConnectionError, FhirNotFoundError, FhirServerError, InputError
from ._client import FhirClient, entry_error

__all__ = ["STRATEGIES", "FetchResult", "fetch_patient", "patient_searches", "ra_search", "is_ours",
           "pick_current"]

log = logging.getLogger("milan_fhir.client")

STRATEGIES = ("auto", "batch", "everything", "searches", "naive")
PAGE_SIZE = 500  # asked per page; servers may cap it lower (paging handles the rest)
_RELEVANT_TYPES = ("Patient", "Observation", "Condition", "Procedure")


@dataclass
class FetchResult:
    """What was read for one patient."""

    patient: str  # "Patient/x"
    resources: list[dict[str, Any]] = field(default_factory=list)  # Patient, Observations, Conditions, Procedures
    strategy: str = ""  # the strategy that produced it (after any fallback)
    requests: int = 0  # HTTP requests it took (not counting urllib3 retries)
    patient_found: bool = False
    #: rule set -> the current RiskAssessment found by identifier (None: none on the server); only for the rule
    #: sets asked for
    risk_assessments: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)  # why a fallback was taken


def patient_searches(patient_id: str, mappings: Mappings) -> list[tuple[str, str]]:
    """The searches for one patient (by subject, never by code): ``(resource type, relative URL)``; the Patient read last."""
    subject = f"Patient/{patient_id}"

    def url(rtype: str, codes: list[str] | None) -> str:
        params = [("subject", subject)]
        if codes:
            params.append(("code", ",".join(codes)))
        params.append(("_count", str(PAGE_SIZE)))
        return f"{rtype}?{urlencode(params, safe='/|,:')}"

    return [
        # every Observation of the patient, unfiltered: a Ki-67 under an unmapped code is recognised by its text
        # and caps low_grade (criteria §1d), which no code search can find; a code filter here let an unusable
        # value go unseen and a server screen say `eligible` where the files said `indeterminate`
        ("Observation", url("Observation", None)),
        ("Condition", url("Condition", None)),
        # every Procedure too: code entries may be prefixes or ranges (OPS 5-504 stands for 5-504.0 ... 5-504.x, a
        # prior liver transplant), which a token search cannot express; a missed transplant is a missed exclusion
        ("Procedure", url("Procedure", None)),
        ("Patient", subject),
    ]


def ra_search(patient_id: str, rule_set: str) -> str:
    """The search for the current RiskAssessment of (patient, rule set), by its deterministic identifier."""
    value = identifier_value(f"Patient/{patient_id}", rule_set)
    return f"RiskAssessment?{urlencode([('identifier', f'{IDENTIFIER_SYSTEM}|{value}')], safe='/|:')}"


def is_ours(ra: Any, patient_id: str, rule_set: str) -> bool:
    """Whether ``ra`` is the RiskAssessment of (patient, rule set) milan-fhir writes: our identifier (system and
    value) and the patient as subject. A server that ignores the ``identifier`` search parameter answers with
    other patients' assessments: those must never be taken for ours."""
    if not isinstance(ra, dict) or ra.get("resourceType") != "RiskAssessment" or not isinstance(ra.get("id"), str):
        return False
    value = identifier_value(f"Patient/{patient_id}", rule_set)
    idents = ra.get("identifier") if isinstance(ra.get("identifier"), list) else []
    if not any(isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM and i.get("value") == value for i in idents):
        return False
    subject = (ra.get("subject") or {}).get("reference") if isinstance(ra.get("subject"), dict) else None
    if not isinstance(subject, str):
        return False
    return subject == f"Patient/{patient_id}" or subject.endswith(f"/Patient/{patient_id}")


def pick_current(found: list[dict[str, Any]], patient_id: str, rule_set: str) -> dict[str, Any] | None:
    """Of the RiskAssessments found, the one we keep writing: only those whose identifier and subject are ours
    (:func:`is_ours`) count; of them the deterministic id if present, else the most recently updated (a server
    may hold an older duplicate written by another tool)."""
    mine = [ra for ra in found if is_ours(ra, patient_id, rule_set)]
    if len(mine) < len(found):
        log.warning(
            "the RiskAssessment search answered %d resource(s) that are not the assessment of this patient and rule "
            "set (the server may ignore the identifier parameter); they were left alone", len(found) - len(mine),
        )
    if not mine:
        return None
    want = resource_id(f"Patient/{patient_id}", rule_set)
    for ra in mine:
        if ra.get("id") == want:
            return ra
    return max(mine, key=lambda r: str((r.get("meta") or {}).get("lastUpdated", "")))


def fetch_patient(
    client: FhirClient,
    patient_id: str,
    mappings: Mappings,
    *,
    strategy: str = "auto",
    rule_sets: Iterable[str] = (),
) -> FetchResult:
    """Read what the rules need about ``Patient/patient_id`` (and the current RiskAssessment of each rule set).

    Raises :class:`~milan_fhir.errors.FhirNotFoundError` when the server knows neither the Patient nor any
    data about it.
    """
    patient_id = _bare_id(patient_id)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown fetch strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    rule_sets = list(dict.fromkeys(rule_sets))
    before = client.request_count
    result = FetchResult(patient=f"Patient/{patient_id}")
    order = _order(client, strategy)
    for i, name in enumerate(order):
        try:
            _STRATEGY_FUNCS[name](client, patient_id, mappings, rule_sets, result)
            result.strategy = name
            break
        except (FhirConnectionError, FhirAuthError):
            raise
        except FhirServerError as exc:
            if i == len(order) - 1:
                raise
            result.fallbacks.append(f"{name}: {exc}")
            log.warning("fetching with %s failed (%s); falling back to %s", name, exc, order[i + 1])
            result.resources.clear()
            result.risk_assessments.clear()
    # RiskAssessments not read by the strategy (everything, searches): one search each
    for rs in rule_sets:
        if rs not in result.risk_assessments:
            found = list(client.search("RiskAssessment", _query(ra_search(patient_id, rs))))
            result.risk_assessments[rs] = pick_current(found, patient_id, rs)
    result.resources = _dedupe(result.resources)
    result.patient_found = any(r.get("resourceType") == "Patient" for r in result.resources)
    result.requests = client.request_count - before
    if not result.resources:
        raise FhirNotFoundError(
            f"the server at {client.base_url} has no Patient {patient_id} and no data about it",
            status=404,
            url=client.base_url,
        )
    return result


# ---------------------------------------------------------------------------------------------- strategies


def _order(client: FhirClient, strategy: str) -> list[str]:
    if strategy != "auto":
        return [strategy]
    try:
        batch = client.supports("batch") or client.supports("transaction")
        everything = client.supports_operation("everything", "Patient")
    except (FhirConnectionError, FhirAuthError):
        raise
    except FhirServerError:  # no readable CapabilityStatement: try the most capable first
        batch = everything = True
    order = (["batch"] if batch else []) + (["everything"] if everything else []) + ["searches"]
    return order


def _batch(client: FhirClient, patient_id: str, mappings: Mappings, rule_sets: list[str], out: FetchResult) -> None:
    searches = patient_searches(patient_id, mappings)
    urls = [u for _, u in searches] + [ra_search(patient_id, rs) for rs in rule_sets]
    response = client.batch([{"request": {"method": "GET", "url": u}} for u in urls])
    entries = response.get("entry") or []
    if len(entries) != len(urls):
        raise FhirServerError(
            f"the batch answer has {len(entries)} entries for {len(urls)} requests", url=client.base_url
        )
    for i, (u, entry) in enumerate(zip(urls, entries)):
        is_patient_read = i == len(searches) - 1
        err = entry_error(entry, f"GET {u.split('?')[0]}", client.base_url)
        if is_patient_read:
            if err is None and isinstance(entry.get("resource"), dict):
                out.resources.append(entry["resource"])
            elif err is not None and not isinstance(err, FhirNotFoundError):
                out.resources.extend(_get_one(client, u))  # fallback for this entry alone
            continue
        if err is not None:
            # the fallback for one failed entry: the same search on its own (raises a clear error if it fails too)
            out.fallbacks.append(f"batch entry {u.split('?')[0]}: {err}")
            found = list(client.search(u.split("?")[0], _query(u)))
        else:
            bundle = entry.get("resource") or {}
            found = list(client.resources(bundle, what=f"{u.split('?')[0]} search"))
        if i < len(searches):
            out.resources.extend(found)
        else:
            rs = rule_sets[i - len(searches)]
            out.risk_assessments[rs] = pick_current(found, patient_id, rs)


def _everything(client: FhirClient, patient_id: str, mappings: Mappings, rule_sets: list[str], out: FetchResult) -> None:
    first = client.operation(f"Patient/{patient_id}/$everything", params={"_count": str(PAGE_SIZE)})
    found_ra: dict[str, list[dict[str, Any]]] = {rs: [] for rs in rule_sets}
    wanted = {identifier_value(f"Patient/{patient_id}", rs): rs for rs in rule_sets}
    for res in client.resources(first, what="Patient/$everything", mode=None):
        rtype = res.get("resourceType")
        if rtype in _RELEVANT_TYPES:
            out.resources.append(res)
        elif rtype == "RiskAssessment":
            for ident in res.get("identifier") or []:
                if ident.get("system") == IDENTIFIER_SYSTEM and ident.get("value") in wanted:
                    found_ra[wanted[ident["value"]]].append(res)
    for rs, found in found_ra.items():
        out.risk_assessments[rs] = pick_current(found, patient_id, rs)


def _searches(client: FhirClient, patient_id: str, mappings: Mappings, rule_sets: list[str], out: FetchResult) -> None:
    for rtype, u in patient_searches(patient_id, mappings):
        if rtype == "Patient":
            out.resources.extend(_get_one(client, u))
        else:
            out.resources.extend(client.search(rtype, _query(u)))


def _naive(client: FhirClient, patient_id: str, mappings: Mappings, rule_sets: list[str], out: FetchResult) -> None:
    """Unfiltered per-type searches: the benchmark baseline, never chosen by ``auto``."""
    for rtype in ("Observation", "Condition", "Procedure"):
        out.resources.extend(client.search(rtype, {"subject": f"Patient/{patient_id}"}))
    out.resources.extend(_get_one(client, f"Patient/{patient_id}"))


_STRATEGY_FUNCS = {"batch": _batch, "everything": _everything, "searches": _searches, "naive": _naive}


# ---------------------------------------------------------------------------------------------- helpers


def _get_one(client: FhirClient, path: str) -> list[dict[str, Any]]:
    try:
        return [client.json("GET", path)]
    except FhirNotFoundError:
        return []


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(url.split("?", 1)[1]) if "?" in url else []


def _bare_id(patient_id: str) -> str:
    pid = str(patient_id).strip()
    if pid.startswith("Patient/"):
        pid = pid[len("Patient/") :]
    if not pid or "/" in pid or "?" in pid:
        raise InputError(f"{patient_id!r} is not a Patient id (expected an id such as 123 or Patient/123)")
    return pid


def _dedupe(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for r in resources:
        key = f"{r.get('resourceType')}/{r.get('id')}"
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out
