"""Conditions: primary NET (site, drainage), metastases (liver / extrahepatic / unspecified), grade evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from .._domain import GradeFact, MetastasisFact, PrimaryFact
from .._mappings import CodeEntry, Mappings
from ._common import Ctx
from ._values import codings, codings_of_all, first_date, period_part, unverified, as_list

__all__ = ["ConditionKind", "classify", "adapt", "clinical_date", "is_active"]

NOT_COUNTING_VERIFICATION = ("refuted", "entered-in-error")
INACTIVE_CLINICAL = ("inactive", "resolved", "remission")


@dataclass(frozen=True, slots=True)
class ConditionKind:
    """What a Condition's codes make it: a metastasis, a primary NET, and/or a carrier of morphology."""

    metastasis: CodeEntry | None
    primary: CodeEntry | None  # primary_net, primary_net_by_morphology or generic_cancer entry
    primary_section: str | None
    morphology: CodeEntry | None  # a NET morphology (extension or code)
    diagnosis_high_grade: CodeEntry | None  # a code flagged high_grade (C7A.1)

    @property
    def concept(self) -> str:
        if self.metastasis is not None:
            return "metastasis"
        return "primary" if self.is_primary else "morphology"

    @property
    def is_primary(self) -> bool:
        return self.metastasis is None and (self.primary is not None or self.morphology is not None)


def classify(cond: dict[str, Any], mappings: Mappings) -> ConditionKind | None:
    """Recognise a Condition by its codes and morphology; None when the rules do not use it."""
    pairs = codings(cond.get("code"))
    morphology = _morphology(cond, pairs, mappings)
    metastasis = mappings.match_any("metastasis", pairs)
    primary, section = mappings.match_any("primary_net", pairs), "primary_net"
    if primary is None and morphology is not None:
        for section in ("primary_net_by_morphology", "generic_cancer"):
            primary = mappings.match_any(section, pairs)
            if primary is not None:
                break
    if primary is None:
        section = None
    if metastasis is None and primary is None and morphology is None:
        return None
    high = primary if primary is not None and primary.high_grade else None
    return ConditionKind(metastasis, primary, section, morphology, high)


def _morphology(cond: dict[str, Any], pairs: list[tuple[str | None, str | None]], mappings: Mappings) -> CodeEntry | None:
    url = mappings.extensions.get("histology_morphology")
    for ext in as_list(cond.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            hit = mappings.match_any("morphology", codings(ext.get("valueCodeableConcept")))
            if hit is not None and hit.net:
                return hit
    hit = mappings.match_any("morphology", pairs)
    return hit if hit is not None and hit.net else None


def clinical_date(cond: dict[str, Any]) -> date | None:
    """onset[x] when a date (a Period: its start), else ``recordedDate`` (criteria.md §1, §3a)."""
    return first_date(
        cond.get("onsetDateTime"), period_part(cond.get("onsetPeriod"), "start"), cond.get("recordedDate")
    )


def is_active(cond: dict[str, Any]) -> bool:
    """Active unless clinicalStatus is inactive, resolved or remission (criteria.md §1)."""
    return not any(code in INACTIVE_CLINICAL for _, code in codings(cond.get("clinicalStatus")))


def adapt(ctx: Ctx, kind: ConditionKind) -> None:
    cond = ctx.resource
    verification = [code for _, code in codings(cond.get("verificationStatus")) if code in NOT_COUNTING_VERIFICATION]
    if verification:
        ctx.ignore(f"verificationStatus {verification[0]!r}: the Condition does not count")
        return
    when, active = clinical_date(cond), is_active(cond)
    if kind.metastasis is not None:
        _metastasis(ctx, kind.metastasis, when, active)
    elif kind.is_primary:
        _primary(ctx, kind, when, active)
    _grades(ctx, kind, when)


# ---------------------------------------------------------------------------------------------- primary
def _primary(ctx: Ctx, kind: ConditionKind, when: date | None, active: bool) -> None:
    site_key, site_entry = _primary_site(ctx, kind)
    site = ctx.mappings.site(site_key)
    code = kind.primary or kind.morphology
    words = f"primary NET: {code.display} ({code.label}), site {site.label}"
    if kind.morphology is not None and kind.morphology is not code:
        words += f", morphology {kind.morphology.display} ({kind.morphology.label})"
    src = ctx.source(words, when, unverified(kind.primary, kind.morphology, site_entry))
    fact = PrimaryFact(
        site=site_key,
        site_label=site.label,
        group=site.group,
        drainage=site.drainage,
        note=site.note,
        active=active,
        source=src,
    )
    ctx.add("primaries", fact)


def _primary_site(ctx: Ctx, kind: ConditionKind) -> tuple[str, CodeEntry | None]:
    entry = kind.primary
    if entry is not None and entry.site and entry.site != "from-body-site":
        return entry.site, None
    body = _body_site(ctx)
    if body is not None and body.site:
        return body.site, body
    fallback = entry.fallback_site if entry is not None else None
    return fallback or "unreadable", None


def _body_site(ctx: Ctx) -> CodeEntry | None:
    return ctx.mappings.match_any("body_sites", codings_of_all(ctx.resource.get("bodySite")))


# ---------------------------------------------------------------------------------------------- metastasis
def _metastasis(ctx: Ctx, entry: CodeEntry, when: date | None, active: bool) -> None:
    site_key, body = _metastasis_site(ctx, entry)
    if site_key is None:
        location, label = "unspecified", "site not specified"
    else:
        location = "liver" if site_key == "liver" else "extrahepatic"
        label = ctx.mappings.site(site_key).label
    words = f"metastasis: {entry.display} ({entry.label}), {label}"
    src = ctx.source(words, when, unverified(entry, body))
    ctx.add(
        "metastases",
        MetastasisFact(site=site_key, site_label=label, location=location, active=active, source=src),
    )


def _metastasis_site(ctx: Ctx, entry: CodeEntry) -> tuple[str | None, CodeEntry | None]:
    """The metastasis site key (None: unspecified) and the bodySite entry used, if any."""
    if entry.site not in ("from-body-site", "unspecified"):
        return entry.site, None
    body = _body_site(ctx)
    if body is not None and body.site:
        return body.site, body
    if ctx.resource.get("bodySite"):
        ctx.unusable("metastasis", "bodySite", "bodySite code is not in the mappings; the metastasis site is unspecified")
    return None, None


# ---------------------------------------------------------------------------------------------- grade
def _grades(ctx: Ctx, kind: ConditionKind, when: date | None) -> None:
    """Grade evidence from morphology and high-grade diagnosis codes, whatever the Condition's status."""
    m = kind.morphology
    if m is not None and (m.high_grade or m.grade in (1, 2, 3)):
        grade = 3 if m.high_grade else m.grade
        label = f"{m.display} ({m.label})"
        src = ctx.source(f"morphology {label}", when, unverified(m))
        ctx.add("grades", GradeFact(grade=grade, kind="morphology", label=label, source=src))
    d = kind.diagnosis_high_grade
    if d is not None:
        label = f"{d.display} ({d.label})"
        src = ctx.source(f"diagnosis {label}", when, unverified(d))
        ctx.add("grades", GradeFact(grade=3, kind="diagnosis", label=label, source=src))
