"""Small builders of domain facts for the criteria and evaluation tests (no FHIR involved)."""

from __future__ import annotations

import itertools
from datetime import date
from functools import lru_cache

from milan_fhir._domain import (
    DiseaseStatusFact,
    GradeFact,
    Ki67Fact,
    LiverBurdenFact,
    MalignancyFact,
    MetastasisFact,
    PartialDate,
    PatientFact,
    PatientRecord,
    PrimaryFact,
    ProcedureFact,
    RuleSet,
    Source,
    StagingFact,
    Unusable,
)
from milan_fhir._mappings import default_mappings

AS_OF = date(2026, 1, 15)
PATIENT = "Patient/p1"
_ids = itertools.count(1)


@lru_cache(maxsize=None)
def rules(name: str = "milan-net") -> RuleSet:
    return default_mappings().rule_set(name)


def D(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def src(ref: str | None = None, when: str | None = None, *, kind: str = "Observation",
        value: str | None = None, unverified: tuple[str, ...] = ()) -> Source:
    return Source(reference=ref or f"{kind}/x{next(_ids)}", date=D(when), value=value, unverified_codes=unverified)


def record(**facts) -> PatientRecord:
    facts.setdefault("patient", PATIENT)
    return PatientRecord(**facts)


def patient(birth: str | PartialDate | None) -> PatientFact:
    if isinstance(birth, str):
        parts = [int(p) for p in birth.split("-")]
        birth = PartialDate(year=parts[0], month=parts[1] if len(parts) > 1 else None,
                            day=parts[2] if len(parts) > 2 else None)
    return PatientFact(birth_date=birth, source=Source(reference=PATIENT, value=f"birthDate {birth}"))


def ki67(pct: float, when: str | None = "2025-03-01", ref: str | None = None, comparator=None) -> Ki67Fact:
    return Ki67Fact(percent=pct, comparator=comparator, source=src(ref, when, value=f"Ki-67 {pct} %"))


def grade(g: int, when: str | None = "2025-03-01", ref: str | None = None, kind: str = "grade",
          label: str | None = None) -> GradeFact:
    k = "Observation" if kind == "grade" else "Condition"
    return GradeFact(grade=g, kind=kind, label=label or f"G{g}", source=src(ref, when, kind=k))


def burden(pct: float, when: str | None = "2025-12-01", ref: str | None = None, comparator=None) -> LiverBurdenFact:
    return LiverBurdenFact(percent=pct, comparator=comparator, source=src(ref, when))


def status(trend: str, when: str | None, ref: str | None = None) -> DiseaseStatusFact:
    return DiseaseStatusFact(trend=trend, source=src(ref, when))


def staging(present: bool, when: str | None = "2025-12-01", ref: str | None = None) -> StagingFact:
    return StagingFact(present=present, source=src(ref, when))


def metastasis(location: str = "extrahepatic", when: str | None = "2025-01-01", ref: str | None = None,
               active: bool = True, site: str | None = "bone", label: str = "bone") -> MetastasisFact:
    return MetastasisFact(site=site, site_label=label, location=location, active=active,
                          source=src(ref, when, kind="Condition"))


_SITES = {
    "ileum": ("ileum", "small_intestine", "portal", None),
    "pancreas": ("pancreas", "pancreas", "portal", None),
    "appendix": ("appendix", "appendix", "portal", None),
    "cecum": ("caecum", "colon", "portal", None),
    "stomach": ("stomach", "stomach", "portal", None),
    "midgut": ("midgut (site not specified further)", None, "portal", None),
    "lung": ("bronchus and lung", None, "systemic", None),
    "rectum": ("rectum", "rectum", "review",
               "the upper rectum drains to the portal system, the middle and lower rectum to the systemic circulation"),
    "unreadable": ("site not recorded", None, "review",
                   "the primary's code does not name its site and no mapped bodySite is recorded"),
    "unknown_primary": ("unknown primary site", None, "unknown", None),
}


def primary(site: str = "ileum", when: str | None = "2020-01-01", ref: str | None = None,
            active: bool = True) -> PrimaryFact:
    if site in _SITES:
        label, group, drainage, note = _SITES[site]
    else:
        s = default_mappings().site(site)
        label, group, drainage, note = s.label, s.group, s.drainage, s.note
    return PrimaryFact(site=site, site_label=label, group=group, drainage=drainage, note=note, active=active,
                       site_path=default_mappings().site_path(site), source=src(ref, when, kind="Condition"))


def resection(when: str | None = "2020-02-01", ref: str | None = None, *, reason: tuple[str, ...] = (),
              body: tuple[str, ...] = (), code: tuple[str, ...] = (), kind: str = "primary_resection",
              unverified: tuple[str, ...] = (), reason_codes: tuple[str, ...] = ()) -> ProcedureFact:
    """``body`` and ``code``: site keys (sites.yaml) of the bodySite and of the sites the code removes."""
    m = default_mappings()
    return ProcedureFact(kind=kind, code_groups=code, body_site_groups=body, reason_references=reason,
                         code_site_paths=tuple(m.site_path(k) for k in code),
                         body_site_paths=tuple(m.site_path(k) for k in body),
                         code_site_labels=tuple(m.site(k).label for k in code),
                         body_site_labels=tuple(m.site(k).label for k in body),
                         other_reason_codes=reason_codes,
                         source=src(ref, when, kind="Procedure", unverified=unverified))


def malignancy(kind: str = "code", when: str | None = "2015-01-01", ref: str | None = None, *, active: bool = True,
               site: str | None = None, label: str = "Malignant neoplasm of breast (ICD-10-CM C50.9)",
               has_morphology: bool = False, suspected: bool = False) -> MalignancyFact:
    m = default_mappings()
    s = m.site(site) if site else None
    return MalignancyFact(kind=kind, label=label, has_morphology=has_morphology, site=site,
                          site_label=s.label if s else "site not recorded", drainage=s.drainage if s else "review",
                          site_path=m.site_path(site) if site else (), active=active, suspected=suspected,
                          verification="differential" if suspected else None,
                          source=src(ref, when, kind="Condition", value=label))


def unusable(ref: str, concept: str, field: str = "valueString", reason: str = "text without %") -> Unusable:
    return Unusable(reference=ref, concept=concept, field=field, reason=reason)
