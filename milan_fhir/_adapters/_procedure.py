"""Procedures: resection of the primary, liver resection (minor/major), liver transplantation."""

from __future__ import annotations

from datetime import date
from typing import Any

from .._domain import ProcedureFact
from .._mappings import CodeEntry, Mappings
from ._common import Ctx
from ._values import codings, codings_of_all, first_date, period_part, resolve_reference, unverified, as_list

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
    body_entries = [m.match("body_sites", s, c) for s, c in codings_of_all(proc.get("bodySite"))]
    body_entries = [e for e in body_entries if e is not None]
    body_groups = _groups(m, [e.site for e in body_entries if e.site])
    reasons = []
    for ref in as_list(proc.get("reasonReference")):
        target = resolve_reference(ref, ctx.resolve)
        if target and target.startswith("Condition/") and target not in reasons:
            reasons.append(target)
    words = f"{_WORDS[concept]}: {entry.display} ({entry.label})"
    src = ctx.source(words, clinical_date(proc), unverified(entry, *body_entries))
    fact = ProcedureFact(
        kind=concept,
        code_groups=code_groups,
        body_site_groups=body_groups,
        reason_references=tuple(reasons),
        source=src,
    )
    ctx.add("procedures", fact)


def _groups(mappings: Mappings, site_keys: Any) -> tuple[str, ...]:
    out: list[str] = []
    for key in site_keys:
        site = mappings.sites.get(key)
        if site is not None and site.group and site.group not in out:
            out.append(site.group)
    return tuple(out)
