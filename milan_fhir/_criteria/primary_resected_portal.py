"""``primary_resected_portal`` — primary tumour drained by the portal system and resected (criteria.md §3, §3a).

- The primaries are the primary NET Conditions of the NET (§1a, §1d: after the neuroendocrine-carcinoma rule and
  liver-sited NET Conditions read as liver-metastasis records).
- An unknown-site primary is ignored when a primary of known site exists; only unknown primaries: ``not_met``.
- Per known primary: ``systemic`` -> ``not_met``; ``review`` -> ``indeterminate`` naming the site and why;
  ``portal`` -> ``met`` with a completed primary resection on or before ``as_of`` that either names it in its
  ``reasonReference``, or (v2) names no Condition outside the NET, carries no ``reasonCode`` that is not a code of
  the NET, removes a site that matches the primary's on the site tree (a mapped bodySite decides, else its code's
  sites), and is performed no earlier than [resection_lead_months] before the primary's clinical time.
- Several primaries of known site: the worst result wins (``not_met``, then ``indeterminate``, then ``met``).
- (v2) A suspected primary adds ``indeterminate`` where it would be ``not_met`` or ``indeterminate``, nothing
  where it would be ``met``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .._dates import whole_years
from .._domain import CriterionResult, Ignored, PatientRecord, PrimaryFact, ProcedureFact, RuleSet, Source, Status
from ._attribution import NetView, net_view, sites_match
from ._common import cite, counts_existence, months_back, result

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


def _why_not(p: PrimaryFact, proc: ProcedureFact, view: NetView, lead: int) -> tuple[str | None, str]:
    """(None, how it counts) when ``proc`` counts as the resection of ``p``; else (why not, "")."""
    if p.source.reference in proc.reason_references:
        return None, "done for this Condition"
    others = [r for r in proc.reason_references if r not in view.net_refs]
    if others:
        shown = ", ".join(r.removeprefix("unresolved:") for r in others)
        return f"for {shown}, not the NET", ""
    if proc.other_reason_codes:
        return f"its reasonCode {', '.join(proc.other_reason_codes)} is not a code of the NET", ""
    paths = proc.body_site_paths or proc.code_site_paths
    labels = proc.body_site_labels if proc.body_site_paths else proc.code_site_labels
    own = p.site_path or (p.site,)
    if not any(sites_match(path, own) for path in paths):
        shown = ", ".join(labels) or "not recorded"
        return f"site {shown} does not match the primary's site {p.site_label}", ""
    if p.source.date is not None and proc.source.date is not None:
        earliest = months_back(p.source.date, lead)
        if proc.source.date < earliest:
            years = whole_years(proc.source.date, p.source.date)
            gap = f"{years} years" if years >= 1 else f"more than {lead} months"
            return f"performed {proc.source.date}, {gap} before the NET was recorded ({p.source.reference})", ""
    matched = next(labels[i] for i, path in enumerate(paths) if sites_match(path, own)) if labels else "its site"
    how = "bodySite" if proc.body_site_paths else "a resection code"
    return None, f"{how} for the {matched}, matching the {p.site_label}"


def _judge(p: PrimaryFact, procedures: list[ProcedureFact], view: NetView, lead: int) -> _One:
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
    found: list[tuple[ProcedureFact, str]] = []
    for proc in procedures:
        not_counted, how = _why_not(p, proc, view, lead)
        if not_counted is None:
            found.append((proc, how))
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


def _procedures(record: PatientRecord, as_of: date) -> list[ProcedureFact]:
    return [proc for proc in record.procedures
            if proc.kind == "primary_resection" and counts_existence(proc.source, as_of)]


def _considered(view: NetView) -> tuple[list[PrimaryFact], list[PrimaryFact], list[PrimaryFact]]:
    confirmed = [p for p in view.primaries if not p.suspected]
    suspected = [p for p in view.primaries if p.suspected]
    known = [p for p in confirmed if p.drainage != "unknown"]
    return known or confirmed, suspected, confirmed


def ignored_procedures(record: PatientRecord, rules: RuleSet, as_of: date, view: NetView) -> list[Ignored]:
    """Resection-coded Procedures that count for no primary, with why (criteria.md §3: listed in ``ignored``)."""
    considered, suspected, _ = _considered(view)
    primaries = [p for p in considered + suspected if p.drainage == "portal"]
    out = []
    for proc in _procedures(record, as_of):
        reasons = [_why_not(p, proc, view, rules.resection_lead_months)[0] for p in primaries]
        if reasons and all(r is not None for r in reasons):
            out.append(Ignored(reference=proc.source.reference, reason=f"resection not counted: {reasons[0]}"))
    return out


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    view = net_view(record, rules, as_of)
    considered, suspected, confirmed = _considered(view)
    procedures = _procedures(record, as_of)
    lead = rules.resection_lead_months
    sus_judged = []
    for p in suspected:
        j = _judge(p, procedures, view, lead)
        if j.status is not Status.MET:
            sus_judged.append(_One(
                Status.INDETERMINATE,
                f"suspected {_name(p)}, {p.verification}: confirm or refute ({j.clause[0].lower()}{j.clause[1:]})",
                [p.source],
                [f"confirmation or refutation of the suspected primary {p.source.reference}"],
            ))
    if not considered:
        if sus_judged:
            j = sus_judged[0]
            return result(NAME, Status.INDETERMINATE, "No confirmed primary NET Condition is recorded; "
                          + "; ".join(s.clause for s in sus_judged), evidence=[s for x in sus_judged for s in x.evidence],
                          missing=[m for x in sus_judged for m in x.missing])
        return result(
            NAME,
            Status.INDETERMINATE,
            "No primary neuroendocrine tumour Condition is recorded",
            missing=("a Condition for the primary NET with its site (e.g. ICD-10-CM C7A.012, or a bodySite)",),
        )
    judged = [_judge(p, procedures, view, lead) for p in considered] + sus_judged
    worst = min(_RANK[j.status] for j in judged)
    deciding = [j for j in judged if _RANK[j.status] == worst]
    status = deciding[0].status
    reason = "; ".join(j.clause for j in deciding)
    known = [p for p in confirmed if p.drainage != "unknown"]
    ignored_unknown = [p for p in confirmed if p.drainage == "unknown"] if known else []
    notes = []
    if ignored_unknown:
        notes.append("unknown-site primary " + ", ".join(p.source.reference for p in ignored_unknown)
                     + " ignored as a primary of known site is recorded")
    not_counted = ignored_procedures(record, rules, as_of, view)
    if not_counted and status is not Status.MET:
        notes.append("not counted: " + "; ".join(f"{i.reference} ({i.reason.removeprefix('resection not counted: ')})"
                                                 for i in not_counted))
    return result(
        NAME,
        status,
        reason,
        evidence=[s for j in deciding for s in j.evidence],
        missing=[m for j in deciding for m in j.missing],
        notes=notes,
    )
