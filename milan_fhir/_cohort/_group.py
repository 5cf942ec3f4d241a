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

from .._domain import PatientRecord

__all__ = ["gather", "evaluate_patients", "in_cohort", "DUPLICATE_REASON"]

DUPLICATE_REASON = "the resource appears more than once; the first copy was used"


def in_cohort(record: PatientRecord) -> bool:
    """The cohort: patients with a primary NET Condition or a liver metastasis Condition that counts."""
    if record.primaries:
        return True
    return any(m.location == "liver" for m in record.metastases)


def gather(records: dict[str, PatientRecord], facts: Iterable[tuple[Any, str, int, Any]]) -> list[tuple[Any, bytes]]:
    """Apply ``(adapted, file, line, order key)`` facts, in the order given, to ``records`` (created as needed).

    Returns the duplicates as ``(order key, errors.ndjson line without newline)``, in the order met.
    """
    dups: list[tuple[Any, bytes]] = []
    for ad, file, line, key in facts:
        rec = records.get(ad.patient)
        if rec is None:
            rec = records[ad.patient] = PatientRecord(patient=ad.patient)
        if ad.counted and ad.reference in rec.inputs:
            err = {"file": file, "line": line, "resource": ad.reference, "field": None, "reason": DUPLICATE_REASON}
            dups.append((key, orjson.dumps(err)))
            continue
        ad.apply(rec)
    return dups


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
