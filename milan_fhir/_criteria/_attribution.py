"""Which tumour a finding is about (criteria.md §1a, §1d v2), resolved over one patient's whole record.

Adapters read one resource at a time and only record the links a resource carries (``focus``, the mCODE
related-condition extension, a Procedure's ``reasonReference``). Here, over the whole :class:`PatientRecord` and
as of one date, we decide:

- the **NET**: the primary NET Conditions and metastasis Conditions, after the cross-resource rules of §1d
  (a site-coded Condition named by a NET morphology Observation is a primary NET; the neuroendocrine-carcinoma
  rule; a NET-morphology Condition sited in the liver beside an extrahepatic primary is a liver-metastasis
  record; a site-coded malignancy without morphology at a primary NET's site is that NET recorded again);
- the **other malignancies** (active or not) and personal histories of malignancy;
- for each Ki-67, grade, morphology or disease-status finding: ``net`` (counts), ``other`` (about another
  tumour: listed in ``ignored``), or ``ambiguous`` (can make a criterion at most ``indeterminate``).

Pure functions over domain facts; no FHIR, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from .._domain import (
    GradeFact,
    Ignored,
    MalignancyFact,
    MetastasisFact,
    PatientRecord,
    PrimaryFact,
    RuleSet,
    Source,
)
from ._common import cite, counts_existence, months_back

__all__ = ["Attribution", "NetView", "net_view", "sites_match", "UNKNOWN_SITES"]

Kind = Literal["net", "other", "ambiguous"]

#: primary site keys that say nothing about where the tumour is
UNKNOWN_SITES = frozenset({"unreadable", "unknown_primary", "site_conflict"})


@dataclass(frozen=True)
class Attribution:
    kind: Kind
    why: str = ""  # for ``other``: "about Condition/x, not the NET"; for ``ambiguous``: the reason


def sites_match(a: Sequence[str], b: Sequence[str]) -> bool:
    """Two site paths (site, parent, ...) match when one site contains the other (codes.md v2 site tree)."""
    return bool(a) and bool(b) and (a[0] in b or b[0] in a)


def _known_site(p: PrimaryFact) -> bool:
    return p.site not in UNKNOWN_SITES and p.drainage != "unknown"


@dataclass
class NetView:
    """The record as one tumour (the NET) and the others, as of ``as_of``."""

    as_of: date
    lead_months: int
    primaries: list[PrimaryFact] = field(default_factory=list)
    metastases: list[MetastasisFact] = field(default_factory=list)
    others: list[MalignancyFact] = field(default_factory=list)
    history: list[MalignancyFact] = field(default_factory=list)
    net_refs: set[str] = field(default_factory=set)
    known_refs: set[str] = field(default_factory=set)
    net_earliest: date | None = None
    notes: list[str] = field(default_factory=list)  # how the cross-resource rules read the record
    ignored: list[Ignored] = field(default_factory=list)
    _seen_ignored: set[tuple[str, str]] = field(default_factory=set)

    @property
    def active_others(self) -> list[MalignancyFact]:
        return [o for o in self.others if o.active_on(self.as_of)]

    def attribute(self, links: Iterable[str], when: date | None, *, requires_link: bool = False,
                  reference: str | None = None) -> Attribution:
        """criteria.md §1a for one finding; an ``other`` finding is put in ``ignored`` (once)."""
        valid = [ref for ref in links if ref in self.known_refs]
        if any(ref in self.net_refs for ref in valid):
            return Attribution("net")
        if valid:
            return self._other(reference, f"about {', '.join(valid)}, not the NET")
        if requires_link:
            return self._other(reference, "a Ki-67 in a breast cancer specimen (LOINC 85330-9) counts only when "
                                          "its focus links it to the NET")
        active = self.active_others
        if active:
            o = active[0]
            return Attribution("ambiguous", f"it is not linked to a tumour (Observation.focus) while another "
                                            f"malignancy is active: {o.label} ({cite(o.source)})")
        if self.others:
            limit = months_back(self.net_earliest, self.lead_months) if self.net_earliest else None
            if when is None or limit is None or when < limit:
                o = self.others[0]
                dated = "undated" if when is None else f"dated {when}"
                net_when = f"the NET's earliest record {self.net_earliest}" if self.net_earliest else \
                    "no dated record of the NET"
                return Attribution("ambiguous", f"it is not linked to a tumour, is {dated} ({net_when}; more than "
                                                f"{self.lead_months} months before counts as another tumour's "
                                                f"possibly) and another malignancy is recorded: {o.label} "
                                                f"({cite(o.source)})")
        return Attribution("net")

    def _other(self, reference: str | None, why: str) -> Attribution:
        if reference is not None and (reference, why) not in self._seen_ignored:
            self._seen_ignored.add((reference, why))
            self.ignored.append(Ignored(reference=reference, reason=why))
        return Attribution("other", why)

    def grade(self, g: GradeFact) -> Attribution:
        """A grade carried by a Condition counts only when that Condition is part of the NET (§1a)."""
        if g.source.reference.startswith("Condition/") and not g.links:
            if g.source.reference in self.net_refs:
                return Attribution("net")
            return Attribution("other", f"{g.source.reference} is not part of the NET")
        return self.attribute(g.links, g.source.date, reference=g.source.reference)


def _as_primary(m: MalignancyFact, carcinoma: bool, morph_label: str) -> PrimaryFact:
    site = m.site or "unreadable"
    value = f"primary NET: {m.label}, site {m.site_label}, morphology {morph_label} (by a linked morphology " \
            "Observation)"
    return PrimaryFact(
        site=site, site_label=m.site_label, drainage=m.drainage, note=m.note, site_path=m.site_path,
        carcinoma=carcinoma, active=m.active, abatement=m.abatement, suspected=m.suspected,
        verification=m.verification, source=m.source.model_copy(update={"value": value}),
    )


def _as_other(p: PrimaryFact, why: str) -> MalignancyFact:
    return MalignancyFact(
        kind="morphology", label=f"{p.source.value or p.source.reference} ({why})", has_morphology=True,
        site=p.site, site_label=p.site_label, drainage=p.drainage, note=p.note, site_path=p.site_path,
        active=p.active, abatement=p.abatement, suspected=p.suspected, verification=p.verification, source=p.source,
    )


def _as_liver_record(p: PrimaryFact, high: bool) -> MetastasisFact:
    value = f"{p.source.value or p.source.reference}: read as a liver-metastasis record (a primary NET of known " \
            "extrahepatic site is recorded)"
    return MetastasisFact(
        site="liver", site_label="liver", location="liver", high_grade=high, active=p.active,
        abatement=p.abatement, suspected=p.suspected, verification=p.verification,
        source=p.source.model_copy(update={"value": value}),
    )


def net_view(record: PatientRecord, rules: RuleSet, as_of: date) -> NetView:
    """Resolve the NET and the other malignancies of ``record`` as of ``as_of`` (criteria.md §1a, §1d)."""
    view = NetView(as_of=as_of, lead_months=rules.attribution_lead_months)
    primaries = [p for p in record.primaries if counts_existence(p.source, as_of)]
    metastases = [m for m in record.metastases if counts_existence(m.source, as_of)]
    malign = [m for m in record.malignancies if counts_existence(m.source, as_of)]
    view.history = [m for m in malign if m.kind == "history"]
    malign = [m for m in malign if m.kind != "history"]
    counted: list[PrimaryFact | MetastasisFact | MalignancyFact] = [*primaries, *metastases, *malign, *view.history]
    view.known_refs = {f.source.reference for f in counted}
    view.known_refs |= {t.source.reference for t in record.transplant_status}

    # 1. a site-coded or generic cancer Condition named by a NET-morphology Observation is a primary NET (codes.md)
    all_morph = [o for o in record.morphology_observations if counts_existence(o.source, as_of)]
    morph_obs = [o for o in all_morph if o.net]
    non_net_named = {ref for o in all_morph if not o.net for ref in o.links}
    remaining: list[MalignancyFact] = []
    for m in malign:
        if m.source.reference in non_net_named and not m.has_morphology:
            # a linked non-NET malignant morphology: certainly another cancer, never "the NET recorded again"
            m = m.model_copy(update={"has_morphology": True})
        named = [o for o in morph_obs if m.source.reference in o.links]
        if named and not m.has_morphology and m.kind in ("site_code", "generic"):
            o = max(named, key=lambda o: o.carcinoma)
            primaries.append(_as_primary(m, o.carcinoma, o.label))
            view.notes.append(f"{m.source.reference} is a primary NET by the morphology of {o.source.reference}")
        else:
            remaining.append(m)
    malign = remaining

    # 2. the neuroendocrine-carcinoma rule and liver-sited NET Conditions (criteria.md §1d)
    well = [p for p in primaries if not p.carcinoma]
    kept: list[PrimaryFact] = []
    for p in primaries:
        others = [q for q in primaries if q is not p and not q.carcinoma]
        extrahepatic = [q for q in others if _known_site(q) and q.site != "liver"]
        if p.site == "liver" and extrahepatic:
            metastases.append(_as_liver_record(p, p.carcinoma))
            view.notes.append(f"{p.source.reference} (NET sited in the liver) is read as a liver-metastasis record "
                              f"beside the primary {extrahepatic[0].source.reference}")
            continue
        if p.carcinoma and _known_site(p) and others and not any(
            sites_match(p.site_path or (p.site,), q.site_path or (q.site,)) for q in others
        ):
            why = f"a neuroendocrine carcinoma at the {p.site_label}, not the site of the NET " \
                  f"{others[0].source.reference}"
            malign.append(_as_other(p, why))
            view.notes.append(f"{p.source.reference} is read as an other malignancy: {why}")
            continue
        kept.append(p)
    del well
    view.primaries = kept
    view.metastases = metastases

    # 3. the same tumour twice: a site-coded malignancy without morphology at a primary NET's site (§1d)
    distinct: list[MalignancyFact] = []
    for m in malign:
        if m.kind in ("site_code", "generic") and not m.has_morphology and m.site_path and any(
            _known_site(p) and sites_match(m.site_path, p.site_path or (p.site,)) for p in kept
        ):
            view.net_refs.add(m.source.reference)
            view.notes.append(f"{m.source.reference} ({m.label}) is read as the NET recorded again")
            continue
        distinct.append(m)
    view.others = distinct

    view.net_refs |= {p.source.reference for p in kept} | {m.source.reference for m in metastases}
    dated = [s.date for s in _net_sources(kept, metastases) if s.date is not None]
    view.net_earliest = min(dated) if dated else None
    return view


def _net_sources(primaries: Sequence[PrimaryFact], metastases: Sequence[MetastasisFact]) -> list[Source]:
    return [p.source for p in primaries] + [m.source for m in metastases]
