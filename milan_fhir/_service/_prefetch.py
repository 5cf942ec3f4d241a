"""Prefetch templates (discovery) and resolving a hook call's prefetch (CDS Hooks 2.0).

The templates are the searches of the client's batch read (:func:`milan_fhir._client._fetch.patient_searches`),
made from the same function and mappings, with ``{{context.patientId}}`` in place of the patient id: what the
EHR prefetches is exactly what ``evaluate --server`` reads.

Resolving a call, for each template key:

- a Bundle (a searchset) or, for ``patient``, a Patient: used as given; a Bundle whose ``link`` has a ``next``
  page is incomplete: its next pages are read from ``fhirServer`` (or the key counts as missing);
- absent, ``null`` or an OperationOutcome (the CDS client could not prefetch it): fetched from ``fhirServer``
  with ``fhirAuthorization`` through :class:`~milan_fhir.FhirClient`; except that, for the ``patient`` read, an
  OperationOutcome whose issues are all ``not-found`` is the answer "no such Patient" (its age is then
  indeterminate, as for data without a Patient resource);
- missing and no ``fhirServer``: :class:`PrefetchMissing`, answered ``412 Precondition Failed``.

Reading "null" as "could not be fetched" (not as "no data") is the safe reading: data the service did not see
could be the worsened assessment or the extrahepatic metastasis that decides the case.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from .._client._fetch import patient_searches
from .._mappings import Mappings
from ..errors import FhirNotFoundError

__all__ = ["PrefetchMissing", "PATIENT_TOKEN", "prefetch_templates", "resolve_prefetch"]

log = logging.getLogger("milan_fhir.service")

PATIENT_TOKEN = "{{context.patientId}}"
_PLACEHOLDER = "MILANFHIRPATIENTID"
#: prefetch keys, by the resource type of each search
_KEYS = {"Patient": "patient", "Condition": "conditions", "Observation": "observations", "Procedure": "procedures"}


class PrefetchMissing(Exception):
    """Prefetch lacks data and no FHIR server was given to fetch it from (HTTP 412)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        super().__init__(
            f"prefetch lacks {', '.join(keys)} and the request gives no fhirServer to fetch it from"
        )


def _searches(mappings: Mappings) -> list[tuple[str, str, str]]:
    """(key, resource type, query template) of each search of the client's batch read."""
    out = []
    for rtype, url in patient_searches(_PLACEHOLDER, mappings):
        out.append((_KEYS[rtype], rtype, url.replace(_PLACEHOLDER, PATIENT_TOKEN)))
    return out


def prefetch_templates(mappings: Mappings) -> dict[str, str]:
    """The discovery document's ``prefetch``: key -> FHIR query with ``{{context.patientId}}``."""
    return {key: query for key, _, query in _searches(mappings)}


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _not_found(value: Any) -> bool:
    """An OperationOutcome saying the read found nothing (every issue ``not-found``): a definite answer."""
    if not _is_outcome(value):
        return False
    issues = value.get("issue") or []
    return bool(issues) and all(isinstance(i, dict) and i.get("code") == "not-found" for i in issues)


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def resolve_prefetch(
    prefetch: dict[str, Any] | None,
    patient_id: str,
    mappings: Mappings,
    client_factory: Any | None,
) -> tuple[list[Any], dict[str, str]]:
    """The inputs to read (Bundles and resources, for :func:`milan_fhir._sources.read_resources`), and where each
    key's data came from (``prefetch``, ``fhirServer``). ``client_factory``: a callable returning a
    :class:`~milan_fhir.FhirClient` for the request's ``fhirServer``, or None when the request gave none."""
    prefetch = prefetch if isinstance(prefetch, dict) else {}
    inputs: list[Any] = []
    origin: dict[str, str] = {}
    wanted: list[tuple[str, str, str]] = []  # still to fetch: key, type, query
    follow: list[tuple[str, dict[str, Any]]] = []  # prefetched Bundles with further pages
    for key, rtype, template in _searches(mappings):
        query = template.replace(PATIENT_TOKEN, patient_id)
        value = prefetch.get(key)
        if rtype == "Patient" and _not_found(value):
            origin[key] = "prefetch (no Patient resource)"  # its age is indeterminate; nothing else changes
            continue
        if value is None or _is_outcome(value) or not isinstance(value, dict):
            wanted.append((key, rtype, query))
            continue
        if value.get("resourceType") == "Bundle":
            inputs.append(value)
            origin[key] = "prefetch"
            if _next_link(value):
                follow.append((key, value))
        elif rtype == "Patient" and value.get("resourceType") == "Patient":
            inputs.append(value)
            origin[key] = "prefetch"
        else:
            wanted.append((key, rtype, query))
    if not wanted and not follow:
        return inputs, origin
    if client_factory is None:
        raise PrefetchMissing([k for k, _, _ in wanted] + [f"{k} (further pages)" for k, _ in follow])
    with client_factory() as client:
        for key, bundle in follow:
            pages = list(client.pages(bundle, what=f"prefetch {key}"))[1:]
            inputs.extend(pages)
            origin[key] = "prefetch+fhirServer"
        for key, rtype, query in wanted:
            if rtype == "Patient":
                try:
                    inputs.append(client.json("GET", query))
                except FhirNotFoundError:
                    pass  # no Patient resource: its age is indeterminate
            else:
                path, _, qs = query.partition("?")
                inputs.extend(client.search(path, parse_qsl(qs)))
            origin[key] = "fhirServer"
    return inputs, origin

