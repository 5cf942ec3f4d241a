"""Evaluating patients on a FHIR server, and writing the results back (public API behind ``milan_fhir``)."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from .._domain import Evaluation, PatientRecord
from .._mappings import Mappings
from ..errors import FhirAuthError, FhirConnectionError, FhirServerError, printable
from ._client import FhirClient
from ._fetch import FetchResult, fetch_patient
from ._writeback import _UNSET, WriteResult
from ._writeback import write_back as _write_back

__all__ = ["ServerResult", "PatientSelection", "evaluate_patient", "evaluate_on_server", "write_back",
           "select_patients", "list_patients", "ALL_PATIENTS_DEFINITION"]

#: a FHIR logical id (R4: [A-Za-z0-9\-\.]{1,64})
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass
class ServerResult:
    """One patient evaluated on a server: the evaluation, what was read, and what was written (if asked)."""

    evaluation: Evaluation
    fetch: FetchResult
    written: WriteResult | None = None


def _settings(as_of: Any, rule_set: str | None, mappings: Any) -> tuple[dt.date, str, Mappings]:
    from .._runtime import as_date as _as_date, resolve_mappings

    m = resolve_mappings(mappings)
    rules = m.rule_set(rule_set)
    return _as_date(as_of), rules.name, m


def evaluate_on_server(
    client: FhirClient,
    patient_id: str,
    *,
    as_of: dt.date | str | None = None,
    rule_set: str | None = None,
    mappings: Mappings | str | os.PathLike[str] | None = None,
    problems: list[Any] | None = None,
    write: bool = False,
    strategy: str = "auto",
    tag: tuple[str, str] | None = None,
) -> ServerResult:
    """Read one patient (at most 2 requests: the cached CapabilityStatement and one batch), evaluate it, and with
    ``write=True`` write the RiskAssessment and Provenance back (1 transaction, or nothing if unchanged)."""
    from .._adapters import build_records
    from .._evaluate import evaluate_record

    day, rs, m = _settings(as_of, rule_set, mappings)
    fetched = fetch_patient(client, patient_id, m, strategy=strategy, rule_sets=[rs] if write else [])
    sink: list[Any] = [] if problems is None else problems
    records = build_records(fetched.resources, m, sink, patient=fetched.patient)
    record = records.get(fetched.patient) or PatientRecord(patient=fetched.patient)
    ev = evaluate_record(record, m.rule_set(rs), day, m.version)
    written = None
    if write:
        written = _write_back(client, ev, m, current=fetched.risk_assessments.get(rs, _UNSET), tag=tag)
    return ServerResult(ev, fetched, written)


def evaluate_patient(
    client: FhirClient,
    patient_id: str,
    *,
    as_of: dt.date | str | None = None,
    rule_set: str | None = None,
    mappings: Mappings | str | os.PathLike[str] | None = None,
    problems: list[Any] | None = None,
) -> Evaluation:
    """Evaluate one patient of a FHIR server against the Milan criteria.

    ``patient_id``: ``123`` or ``Patient/123``. The data is read in at most two requests (the server's
    CapabilityStatement, read once per client, and one batch of per-type searches by subject), falling back to
    ``Patient/$everything`` or plain searches. Other arguments as for :func:`milan_fhir.evaluate`.
    Raises :class:`~milan_fhir.errors.FhirServerError` (or a subclass) when the server fails or does not know
    the patient.
    """
    return evaluate_on_server(
        client, patient_id, as_of=as_of, rule_set=rule_set, mappings=mappings, problems=problems
    ).evaluation


def write_back(
    client: FhirClient,
    evaluation: Evaluation,
    *,
    mappings: Mappings | str | os.PathLike[str] | None = None,
    tag: tuple[str, str] | None = None,
) -> WriteResult:
    """Write an evaluation to the server as its RiskAssessment (one per patient and rule set) with a Provenance,
    in one transaction; nothing is written when the inputs are unchanged (criteria.md §5).

    Version-aware: a concurrent update is never overwritten unseen (``If-Match``), and concurrent writers never
    create two RiskAssessments. ``tag``: a ``(system, code)`` put in ``meta.tag`` of what is written.
    """
    from .._runtime import resolve_mappings

    return _write_back(client, evaluation, resolve_mappings(mappings), tag=tag)


#: what ``--all-patients`` screens (reported in the run's summary)
ALL_PATIENTS_DEFINITION = "every Patient resource on the server"


@dataclass
class PatientSelection:
    """The patients of a whole-server screen and how complete the list is."""

    ids: list[str]
    #: the server's own count of Patient resources (``_summary=count``); None when it gives none
    server_total: int | None
    definition: str = ALL_PATIENTS_DEFINITION
    #: (what, why) of entries of the listing that are not usable Patient ids (reported, never dropped silently)
    unusable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether the listing matches the server's count (unknown counts as complete: nothing to check)."""
        return self.server_total is None or self.server_total == len(self.ids) + len(self.unusable)


def list_patients(client: FhirClient) -> PatientSelection:
    """Every Patient on the server (``Patient?_elements=id``, paged, within the client's page cap), each once,
    checked against the server's count (``Patient?_summary=count``).

    Code searches cannot be complete (aliases, WHO ICD-10, ICD-10-GM, site plus morphology codes, the text
    safety net of criteria.md §1a): a whole-server screen reads every patient and lets the rules decide."""
    total: int | None = None
    try:
        counted = client.json("GET", "Patient", params={"_summary": "count"})
        if isinstance(counted.get("total"), int) and counted["total"] >= 0:
            total = counted["total"]
    except (FhirConnectionError, FhirAuthError):
        raise
    except FhirServerError:
        total = None  # the server cannot count: the listing is all we have
    ids: list[str] = []
    seen: set[str] = set()
    unusable: list[tuple[str, str]] = []
    for res in client.search("Patient", [("_elements", "id"), ("_count", "500")]):
        pid = res.get("id")
        if res.get("resourceType") != "Patient" or not isinstance(pid, str) or not _ID.fullmatch(pid):
            unusable.append((printable(f"{res.get('resourceType')}/{pid}")[:80], "not a valid Patient id"))
            continue
        if pid in seen:
            continue  # a server paging over a changing list may repeat one
        seen.add(pid)
        ids.append(pid)
    return PatientSelection(ids, total, unusable=unusable)


def select_patients(client: FhirClient, mappings: Mappings | None = None) -> Iterator[str]:
    """Every Patient id on the server, each once (:func:`list_patients`; ``mappings`` is no longer used: a code
    pre-selection could miss patients)."""
    yield from list_patients(client).ids
