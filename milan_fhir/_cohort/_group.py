"""The group/evaluate step both cohort engines share (the local one per bucket, the Spark one per partition).

:func:`gather` applies one patient group's facts to their records **in the order given**: the first copy of a
counted resource wins and each later copy is one duplicate error. Both engines give the facts in the same
defined order, whatever their parallelism: file order (files sorted by name), then byte offset in the file, then
the order the scan met them (lines, and the entries of a one-line Bundle). :func:`evaluate_patients` evaluates the
records (sorted by patient) and renders each one's JSON line and RiskAssessment exactly once, as bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .._adapters import deferred_fault
from .._domain import PatientRecord

__all__ = ["gather", "evaluate_patients", "in_cohort", "DUPLICATE_REASON"]

DUPLICATE_REASON = "the resource appears more than once; the first copy was used"


def in_cohort(record: PatientRecord) -> bool:
    """The cohort: patients with a primary NET Condition or a liver metastasis Condition that counts."""
    if record.primaries:
        return True
    return any(m.location == "liver" for m in record.metastases)


def gather(records: dict[str, PatientRecord], facts: Iterable[tuple[Any, str, int, Any]], *,
           all_patients: bool) -> list[tuple[Any, bytes]]:
    """Apply ``(adapted, file, line, order key)`` facts, in the order given, to ``records`` (created as needed).

    A Patient read with its validation deferred (``Adapted.check``: the cohort scans) is validated here, and
    only for a patient who may be evaluated (every one with ``all_patients``; else one whose facts hold a primary
    NET or a liver metastasis, :func:`in_cohort`): R4B validation is the costly part of reading a Patient, and
    most patients of an export are not screened. An invalid copy is an error (as the scan would have reported
    it; with ``all_patients``, exactly what an eager validation gives), the first valid copy counts, a later one
    is a duplicate. The Patient of a patient outside the cohort is applied unvalidated: that record is not
    evaluated; the patient counts as seen even if the Patient would have failed validation.

    Returns the errors (duplicates, deferred invalid Patients) as ``(order key, errors.ndjson line without
    newline)``, in the order met.
    """
    dups: list[tuple[Any, bytes]] = []
    facts = list(facts)
    screened = None if all_patients else {f[0].patient for f in facts if _cohort_fact(f[0])}
    for fact in facts:
        ad = fact[0]
        if ad.check is not None and (screened is None or ad.patient in screened):
            fault = deferred_fault(ad)
            if fault is not None:  # as if the scan had reported it: no record made for it
                dups.append((fact[3], _error(fact, fault[0], fault[1])))
                continue
        rec = records.get(ad.patient)
        if rec is None:
            rec = records[ad.patient] = PatientRecord(patient=ad.patient)
        if ad.counted and ad.reference in rec.inputs:
            dups.append((fact[3], _error(fact, None, DUPLICATE_REASON)))
            continue
        ad.apply(rec)
    return dups


def _cohort_fact(ad: Any) -> bool:
    """Whether applying ``ad`` can put its patient in the cohort (:func:`in_cohort`; a superset: a duplicate
    copy is counted too, which only validates a Patient that need not be)."""
    return any(name == "primaries" or (name == "metastases" and fact.location == "liver") for name, fact in ad.facts)


def _error(fact: tuple[Any, str, int, Any], field: str | None, reason: str) -> bytes:
    ad, file, line, _key = fact
    return orjson.dumps({"file": file, "line": line, "resource": ad.reference, "field": field, "reason": reason})


def evaluate_patients(records: dict[str, PatientRecord], rules: Any, as_of: dt.date, mappings: Any,
                      all_patients: bool) -> Iterator[tuple[str, Any, bytes, bytes]]:
    """``(patient, evaluation, JSON line, RiskAssessment JSON)`` for each patient of the cohort (every patient
    with ``all_patients``), sorted by patient."""
    from .._evaluate import evaluate_record
    from .._writers import fhir, json_lines

    for patient in sorted(records):
        rec = records[patient]
        if not all_patients and not in_cohort(rec):
            continue
        ev = evaluate_record(rec, rules, as_of, mappings.version)
        yield patient, ev, orjson.dumps(json_lines.to_json(ev)), orjson.dumps(fhir.risk_assessment(ev, mappings))
