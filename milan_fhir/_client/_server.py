"""Evaluating patients on a FHIR server, and writing the results back (public API behind ``milan_fhir``)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, Iterator

from .._domain import Evaluation, PatientRecord
from .._mappings import Mappings
from ..errors import InputError
from ._client import FhirClient
from ._fetch import FetchResult, fetch_patient, search_codes
from ._writeback import _UNSET, WriteResult
from ._writeback import write_back as _write_back

__all__ = ["ServerResult", "evaluate_patient", "evaluate_on_server", "write_back", "select_patients"]


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
    CapabilityStatement, read once per client, and one batch of code-filtered searches), falling back to
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


def select_patients(client: FhirClient, mappings: Mappings | None = None) -> Iterator[str]:
    """Patient ids with a NET primary or a metastasis Condition (by the mappings' codes), each once, in the order
    found: the pre-selection for evaluating a whole server. Paged, within the client's page cap."""
    from .._runtime import resolve_mappings

    m = resolve_mappings(mappings)
    codes = search_codes(m, ("primary_net", "primary_net_by_morphology", "metastasis"))
    if not codes:
        raise InputError("the mappings hold no primary-NET or metastasis codes to select patients with")
    seen: set[str] = set()
    # one search per chunk of codes keeps URLs well below common limits (~8 KB)
    chunk: list[str] = []
    chunks: list[list[str]] = []
    for c in codes:
        if sum(len(x) + 1 for x in chunk) + len(c) > 1500:
            chunks.append(chunk)
            chunk = []
        chunk.append(c)
    if chunk:
        chunks.append(chunk)
    for part in chunks:
        params = [("code", ",".join(part)), ("_elements", "subject"), ("_count", "500")]
        for cond in client.search("Condition", params):
            ref = str((cond.get("subject") or {}).get("reference") or "")
            if "Patient/" not in ref:
                continue
            pid = ref.split("Patient/", 1)[1].split("/")[0]
            if pid and pid not in seen:
                seen.add(pid)
                yield pid
