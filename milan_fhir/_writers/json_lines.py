"""The JSON result contract (criteria.md §6): one JSON object per patient, one per line.

The keys of criteria.md §6 (``patient``, ``as_of``, ``rule_set``, ``verdict``, ``criteria`` with ``status``,
``reason``, ``evidence``, ``missing`` for each of the six criteria) are the contract. Beside them, extra keys
give more detail: per criterion ``evidence_detail`` (reference, version, value, date of each source), and at the
top level ``rule_set_version``, ``mapping_version``, ``ignored`` and ``unusable``.
"""

from __future__ import annotations

from typing import IO, Any, Iterable

import orjson

from .._domain import CRITERIA, CriterionResult, Evaluation

__all__ = ["to_json", "dumps", "write_lines"]


def _criterion(res: CriterionResult) -> dict[str, Any]:
    evidence: list[str] = []
    seen: set[str] = set()
    sources = []
    for src in res.evidence:
        if src.reference not in seen:
            seen.add(src.reference)
            evidence.append(src.reference)
        if src not in sources:  # the same source cited twice is shown once
            sources.append(src)
    return {
        "status": str(res.status),
        "reason": res.reason,
        "evidence": evidence,
        "missing": list(res.missing),
        "evidence_detail": [
            {
                "reference": src.reference,
                "version": src.version,
                "value": src.value,
                "date": src.date.isoformat() if src.date else None,
            }
            for src in sources
        ],
    }


def to_json(ev: Evaluation) -> dict[str, Any]:
    """One evaluation as the JSON object of criteria.md §6 (plus the extra detail keys)."""
    names = [n for n in CRITERIA if n in ev.criteria] + [n for n in ev.criteria if n not in CRITERIA]
    return {
        "patient": ev.patient,
        "as_of": ev.as_of.isoformat(),
        "rule_set": ev.rule_set,
        "verdict": str(ev.verdict),
        "criteria": {name: _criterion(ev.criteria[name]) for name in names},
        "rule_set_version": ev.rule_set_version,
        "mapping_version": ev.mapping_version,
        "ignored": [{"reference": i.reference, "reason": i.reason} for i in ev.ignored],
        "unusable": [
            {"reference": u.reference, "concept": u.concept, "field": u.field, "reason": u.reason}
            for u in ev.unusable
        ],
    }


def dumps(ev: Evaluation) -> bytes:
    """One evaluation as one line of JSON (bytes, ending in a newline)."""
    return orjson.dumps(to_json(ev)) + b"\n"


def write_lines(evaluations: Iterable[Evaluation], stream: IO[bytes]) -> int:
    """Write one JSON line per evaluation to a binary stream; returns how many were written."""
    n = 0
    for ev in evaluations:
        stream.write(dumps(ev))
        n += 1
    return n
