"""``primary_resected_portal`` — primary tumour drained by the portal system and resected (criteria.md §3, §3a).

- An unknown-site primary is ignored when a primary of known site exists; only unknown primaries: ``not_met``.
- Per known primary: ``systemic`` -> ``not_met``; ``review`` -> ``indeterminate`` naming the site and why;
  ``portal`` -> ``met`` with a matching completed primary resection on or before ``as_of`` (reasonReference to
  the primary, bodySite in its anatomical group, or a code naming that group), else ``indeterminate``.
- Several primaries of known site: the worst result wins (``not_met``, then ``indeterminate``, then ``met``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .._domain import CriterionResult, PatientRecord, PrimaryFact, ProcedureFact, RuleSet, Source, Status
from ._common import cite, counts_existence, result

NAME = "primary_resected_portal"
_RANK = {Status.NOT_MET: 0, Status.INDETERMINATE: 1, Status.MET: 2}


@dataclass
class _One:
    status: Status
    clause: str
    evidence: list[Source]
    missing: list[str] = field(default_factory=list)


def _name(p: PrimaryFact) -> str:
    return f"primary NET ({p.site_label}; {cite(p.source)})"


def _resections(p: PrimaryFact, procedures: list[ProcedureFact]) -> list[tuple[ProcedureFact, str]]:
    out = []
    for proc in procedures:
        if p.source.reference in proc.reason_references:
            out.append((proc, "done for this Condition"))
        elif p.group is not None and p.group in proc.body_site_groups:
            out.append((proc, f"body site in the {p.group.replace('_', ' ')}"))
        elif p.group is not None and p.group in proc.code_groups:
            out.append((proc, f"a resection code for the {p.group.replace('_', ' ')}"))
    return out


def _judge(p: PrimaryFact, procedures: list[ProcedureFact]) -> _One:
    if p.drainage == "systemic":
        return _One(
            Status.NOT_MET,
            f"The {_name(p)} is drained by the systemic circulation, not the portal system",
            [p.source],
        )
    if p.drainage == "review":
        why = p.note or "its venous drainage depends on the exact sub-site"
        return _One(
            Status.INDETERMINATE,
            f"The {_name(p)} needs clinical review of its drainage: {why}",
            [p.source],
            [f"a clinician's decision whether the {p.site_label} primary ({p.source.reference}) drains to the "
             "portal system, or a more specific primary site"],
        )
    if p.drainage == "unknown":
        return _One(
            Status.NOT_MET,
            f"The primary site is unknown ({cite(p.source)}), so the primary cannot have been resected",
            [p.source],
        )
    found = _resections(p, procedures)
    if found:
        parts = ", ".join(f"{proc.source.reference} ({proc.source.date or 'undated'}, {how})" for proc, how in found)
        return _One(
            Status.MET,
            f"The {_name(p)} drains to the portal system and was resected: {parts}",
            [p.source] + [proc.source for proc, _ in found],
        )
    return _One(
        Status.INDETERMINATE,
        f"The {_name(p)} drains to the portal system, but there is no record of resection of the primary",
        [p.source],
        [f"a completed resection Procedure of the {p.site_label} primary (reasonReference {p.source.reference}, "
         "or a bodySite or resection code for its site)"],
    )


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    primaries = [p for p in record.primaries if counts_existence(p.source, as_of)]
    if not primaries:
        return result(
            NAME,
            Status.INDETERMINATE,
            "No primary neuroendocrine tumour Condition is recorded",
            missing=("a Condition for the primary NET with its site (e.g. ICD-10-CM C7A.012, or a bodySite)",),
        )
    known = [p for p in primaries if p.drainage != "unknown"]
    considered = known or primaries
    procedures = [
        proc for proc in record.procedures
        if proc.kind == "primary_resection" and counts_existence(proc.source, as_of)
    ]
    judged = [_judge(p, procedures) for p in considered]
    worst = min(_RANK[j.status] for j in judged)
    deciding = [j for j in judged if _RANK[j.status] == worst]
    status = deciding[0].status
    reason = "; ".join(j.clause for j in deciding)
    ignored_unknown = [p for p in primaries if p.drainage == "unknown"] if known else []
    notes = []
    if ignored_unknown:
        notes.append("unknown-site primary " + ", ".join(p.source.reference for p in ignored_unknown)
                     + " ignored as a primary of known site is recorded")
    return result(
        NAME,
        status,
        reason,
        evidence=[s for j in deciding for s in j.evidence],
        missing=[m for j in deciding for m in j.missing],
        notes=notes,
    )
