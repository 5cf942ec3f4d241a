"""Procedures: resection of the primary, liver resection (minor/major), liver transplantation."""

from __future__ import annotations

from datetime import date
from typing import Any

from .._domain import ProcedureFact
from .._mappings import CodeEntry, Mappings
from ._common import Ctx
from ._values import as_list, body_site_entries, codings, first_date, period_part, resolve_reference, unverified

__all__ = ["CONCEPTS", "classify", "adapt", "clinical_date"]

CONCEPTS = ("primary_resection", "liver_resection_minor", "liver_resection_major", "liver_transplant")
_WORDS = {
    "primary_resection": "resection of the primary",
    "liver_resection_minor": "minor liver resection",
    "liver_resection_major": "major liver resection",
    "liver_transplant": "liver transplantation",
}


def classify(proc: dict[str, Any], mappings: Mappings) -> tuple[str, CodeEntry] | None:
    return mappings.classify(CONCEPTS, codings(proc.get("code")))


def clinical_date(proc: dict[str, Any]) -> date | None:
    """performed[x] (a Period: its end, else its start) (criteria.md §1)."""
    period = proc.get("performedPeriod")
    return first_date(proc.get("performedDateTime"), period_part(period, "end"), period_part(period, "start"))


def adapt(ctx: Ctx, concept: str, entry: CodeEntry) -> None:
    proc = ctx.resource
    status = proc.get("status")
    if status != "completed":
        ctx.ignore(f"status {status!r}: only completed Procedures count")
        return
    m = ctx.mappings
    code_groups = _groups(m, entry.sites)
    body_entries, _ = body_site_entries(m, proc.get("bodySite"))
    body_keys = list(dict.fromkeys(e.site for e in body_entries if e.site))
    body_groups = _groups(m, body_keys)
    reasons: list[str] = []
    for ref in as_list(proc.get("reasonReference")):
        target = resolve_reference(ref, ctx.resolve)
        if target is None:
            text = ref.get("reference") if isinstance(ref, dict) else ref
            shown = text if isinstance(text, str) else (ref.get("display") if isinstance(ref, dict) else None)
            target = f"unresolved:{str(shown)[:80] if shown else 'a reference without a target'}"
        if target not in reasons:
            reasons.append(target)
    words = f"{_WORDS[concept]}: {entry.display} ({entry.label})"
    src = ctx.source(words, clinical_date(proc), unverified(entry, *body_entries))
    fact = ProcedureFact(
        kind=concept,
        code_groups=code_groups,
        body_site_groups=body_groups,
        code_site_paths=tuple(m.site_path(k) for k in entry.sites if k in m.sites),
        body_site_paths=tuple(m.site_path(k) for k in body_keys),
        code_site_labels=tuple(m.site(k).label for k in entry.sites if k in m.sites),
        body_site_labels=tuple(m.site(k).label for k in body_keys),
        reason_references=tuple(reasons),
        other_reason_codes=_other_reason_codes(m, proc.get("reasonCode")),
        source=src,
    )
    ctx.add("procedures", fact)


#: codes of the NET (criteria.md §3 v2: a primary NET or metastasis code of codes.md; a NET morphology)
_NET_SECTIONS = ("primary_net", "metastasis")


def _other_reason_codes(m: Mappings, reason_codes: Any) -> tuple[str, ...]:
    """Labels of the reasonCode concepts that carry no code of the NET (a text-only reason counts as another)."""
    out: list[str] = []
    for concept in as_list(reason_codes):
        pairs = codings(concept)
        if any(m.match_any(s, pairs) for s in _NET_SECTIONS):
            continue
        morph = m.match_any("morphology", pairs)
        if morph is not None and morph.net:
            continue
        shown = next((f"{s.rsplit('/', 1)[-1]} {c}" for s, c in pairs if s and c), None)
        if shown is None and isinstance(concept, dict) and isinstance(concept.get("text"), str):
            shown = repr(concept["text"][:80])
        out.append(shown or "a reason without a code")
    return tuple(out)


def _groups(mappings: Mappings, site_keys: Any) -> tuple[str, ...]:
    out: list[str] = []
    for key in site_keys:
        site = mappings.sites.get(key)
        if site is not None and site.group and site.group not in out:
            out.append(site.group)
    return tuple(out)
