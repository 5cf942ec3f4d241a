"""The JSON result contract (criteria.md §6): one JSON object per patient, one per line.

The keys of criteria.md §6 are the contract: ``patient``, ``as_of``, ``rule_set``, ``verdict``, ``cautions``
(always present, ``[{code, reason, evidence}]``, possibly empty), ``criteria`` (``status``, ``reason``,
``evidence``, ``missing`` for each of the six criteria), ``ignored`` (``[{reference, why}]``) and ``unusable``
(``[{reference, field, why}]``). Beside them, extra keys give more detail: ``evidence_detail`` per criterion and
per caution (reference, version, value, date of each source), ``concept`` per unusable value, and at the top
level ``rule_set_version`` and ``mapping_version``. ``docs/criteria.md`` §6 documents the contract.
"""

from __future__ import annotations

from typing import IO, Any, Iterable, Sequence

import orjson

from .._domain import Caution, CriterionResult, Evaluation, Source
from ._words import ordered_cautions, ordered_criteria

__all__ = ["to_json", "dumps", "write_lines"]


def _evidence(sources: Sequence[Source]) -> tuple[list[str], list[dict[str, Any]]]:
    """``Type/id`` of each source once, in order, and the detail of each distinct source."""
    refs: list[str] = []
    seen: set[str] = set()
    distinct: list[Source] = []
    for src in sources:
        if src.reference not in seen:
            seen.add(src.reference)
            refs.append(src.reference)
        if src not in distinct:  # the same source cited twice is shown once
            distinct.append(src)
    detail = [
        {
            "reference": src.reference,
            "version": src.version,
            "value": src.value,
            "date": src.date.isoformat() if src.date else None,
        }
        for src in distinct
    ]
    return refs, detail


def _criterion(res: CriterionResult) -> dict[str, Any]:
    refs, detail = _evidence(res.evidence)
    return {
        "status": str(res.status),
        "reason": res.reason,
        "evidence": refs,
        "missing": list(res.missing),
        "evidence_detail": detail,
    }


def _caution(c: Caution) -> dict[str, Any]:
    refs, detail = _evidence(c.evidence)
    return {"code": c.code, "reason": c.reason, "evidence": refs, "evidence_detail": detail}


def to_json(ev: Evaluation) -> dict[str, Any]:
    """One evaluation as the JSON object of criteria.md §6 (plus the extra detail keys)."""
    return {
        "patient": ev.patient,
        "as_of": ev.as_of.isoformat(),
        "rule_set": ev.rule_set,
        "verdict": str(ev.verdict),
        "cautions": [_caution(c) for c in ordered_cautions(ev.cautions)],
        "criteria": {name: _criterion(ev.criteria[name]) for name in ordered_criteria(ev.criteria)},
        "ignored": [{"reference": i.reference, "why": i.reason} for i in ev.ignored],
        "unusable": [
            {"reference": u.reference, "field": u.field, "why": u.reason, "concept": u.concept}
            for u in ev.unusable
        ],
        "rule_set_version": ev.rule_set_version,
        "mapping_version": ev.mapping_version,
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
