"""Conditions: primary NET (site, drainage), metastases (liver / extrahepatic / review / unspecified), other
malignancies, personal history of malignancy, liver transplant status, grade evidence (criteria.md §1, §1a-§1d).

Per resource only: links between resources (a morphology Observation naming a site-coded Condition, the NEC
rule, "the same tumour twice") are resolved over the whole record by the criteria (``_criteria/_attribution``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from .._domain import GradeFact, MalignancyFact, MetastasisFact, PrimaryFact, TransplantStatusFact
from .._mappings import MEMO_MAX, CodeEntry, Mappings
from ._common import Ctx
from ._text import text_net
from ._values import (
    as_list,
    body_site_entries,
    codings,
    combine_sites,
    first_date,
    period_part,
    texts_of,
    unverified,
)

__all__ = ["ConditionKind", "classify", "adapt", "clinical_date", "is_active"]

NOT_COUNTING_VERIFICATION = ("refuted", "entered-in-error")
SUSPECTED_VERIFICATION = ("provisional", "differential", "unconfirmed")
INACTIVE_CLINICAL = ("inactive", "resolved", "remission")


@dataclass(frozen=True, slots=True)
class ConditionKind:
    """What a Condition's codes make it (criteria.md §1d "several codings": a metastasis before a primary NET
    before an other malignancy)."""

    concept: str  # "metastasis" | "primary" | "malignancy" | "prior_malignancy" | "transplant_status"
    metastases: tuple[CodeEntry, ...] = ()
    primaries: tuple[CodeEntry, ...] = ()  # primary_net entries
    site_codes: tuple[CodeEntry, ...] = ()  # ICD-10 site table entries (primary_net_by_morphology)
    generic: CodeEntry | None = None
    other: CodeEntry | None = None  # other_malignancy entry
    morphology: CodeEntry | None = None  # a NET morphology
    other_morphology: CodeEntry | None = None  # a malignant non-NET morphology
    prior: CodeEntry | None = None
    transplant: CodeEntry | None = None
    text: str | None = None  # "metastasis" | "malignancy": the text safety net

    @property
    def is_primary(self) -> bool:
        return self.concept == "primary"

    @property
    def metastasis(self) -> CodeEntry | None:
        return self.metastases[0] if self.metastases else None


def _all(mappings: Mappings, concept: str, pairs: list[tuple[str | None, str | None]]) -> tuple[CodeEntry, ...]:
    out = []
    for system, code in pairs:
        hit = mappings.match(concept, system, code)
        if hit is not None and hit not in out:
            out.append(hit)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Coded:
    """What a Condition's ``code`` codings alone say, for every concept (cached per mapping set: the same codings
    recur over a cohort)."""

    metastases: tuple[CodeEntry, ...]
    primaries: tuple[CodeEntry, ...]
    site_codes: tuple[CodeEntry, ...]
    morphologies: tuple[CodeEntry, ...]
    generic: CodeEntry | None
    other: CodeEntry | None
    prior: CodeEntry | None
    transplant: CodeEntry | None
    z_coded: bool


def _memoised(mappings: Mappings, name: str, parts: list[Any], compute: Any) -> Any:
    """``compute()``, kept in the mapping set's memo ``name`` under ``parts`` (bounded; parts that cannot be a
    key, not strings, are worked out each time)."""
    cache = mappings.memo(name)
    key: tuple[Any, ...] | None = tuple(parts)
    try:
        return cache[key]
    except KeyError:
        pass
    except TypeError:
        key = None
    value = compute()
    if key is not None and len(cache) < MEMO_MAX:
        cache[key] = value
    return value


def _coded(mappings: Mappings, pairs: list[tuple[Any, Any]]) -> _Coded:
    coded: _Coded = _memoised(mappings, "condition-codes", pairs, lambda: _Coded(
        _all(mappings, "metastasis", pairs), _all(mappings, "primary_net", pairs),
        _all(mappings, "primary_net_by_morphology", pairs), _all(mappings, "morphology", pairs),
        mappings.match_any("generic_cancer", pairs), mappings.match_any("other_malignancy", pairs),
        mappings.match_any("prior_malignancy", pairs), mappings.match_any("liver_transplant_status", pairs),
        _z_coded(mappings, pairs)))
    return coded


def _text_hit(mappings: Mappings, texts: list[str]) -> str | None:
    """The text safety net's answer for a Condition's texts."""
    hit: str | None = _memoised(mappings, "condition-texts", texts, lambda: text_net(mappings.text_nets, texts))
    return hit


def classify(cond: dict[str, Any], mappings: Mappings) -> ConditionKind | None:
    """Recognise a Condition by its codes, morphology and (as a safety net) its text; None when unused."""
    pairs = codings(cond.get("code"))
    c = _coded(mappings, pairs)
    morph, other_morph = _morphology(cond, c.morphologies, mappings)
    metastases, primaries, site_codes = c.metastases, c.primaries, c.site_codes
    generic, other, prior, transplant = c.generic, c.other, c.prior, c.transplant
    fields: dict[str, Any] = dict(metastases=metastases, primaries=primaries, site_codes=site_codes, generic=generic, other=other,
                  morphology=morph, other_morphology=other_morph, prior=prior, transplant=transplant)
    if metastases:
        return ConditionKind("metastasis", **fields)
    if primaries or morph is not None:
        return ConditionKind("primary", **fields)
    if site_codes or generic or other or other_morph:
        return ConditionKind("malignancy", **fields)
    if prior is not None:
        return ConditionKind("prior_malignancy", **fields)
    if transplant is not None:
        return ConditionKind("transplant_status", **fields)
    if c.z_coded:
        return None
    hit = _text_hit(mappings, texts_of(cond.get("code")))
    if hit is not None:
        return ConditionKind("metastasis" if hit == "metastasis" else "malignancy", **fields, text=hit)
    return None


def _z_coded(mappings: Mappings, pairs: list[tuple[str | None, str | None]]) -> bool:
    prefixes = tuple(p.upper() for p in mappings.text_nets.exclusion_code_prefixes)
    return bool(prefixes) and any(
        system and code and mappings.is_icd10(system) and code.strip().upper().startswith(prefixes)
        for system, code in pairs
    )


def _morphology(
    cond: dict[str, Any], coded: tuple[CodeEntry, ...], mappings: Mappings
) -> tuple[CodeEntry | None, CodeEntry | None]:
    """(NET morphology, malignant non-NET morphology) from the mCODE extension or a coding of the code (``coded``:
    the morphology entries of the code's codings)."""
    url = mappings.extensions.get("histology_morphology")
    found: list[CodeEntry] = []
    for ext in as_list(cond.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            found.extend(_all(mappings, "morphology", codings(ext.get("valueCodeableConcept"))))
    found.extend(coded)
    net = [e for e in found if e.net]
    other = [e for e in found if not e.net]
    # conflicting NET morphologies: the one of highest grade evidence first (criteria.md §3a, the highest counts)
    net.sort(key=lambda e: (not e.high_grade, -(e.grade or 0)))
    return (net[0] if net else None), (other[0] if other else None)


def clinical_date(cond: dict[str, Any]) -> date | None:
    """onset[x] when a date (a Period: its start), else ``recordedDate`` (criteria.md §1, §3a)."""
    return first_date(
        cond.get("onsetDateTime"), period_part(cond.get("onsetPeriod"), "start"), cond.get("recordedDate")
    )


def is_active(cond: dict[str, Any]) -> bool:
    """Active unless clinicalStatus is inactive, resolved or remission (criteria.md §1)."""
    return not any(code in INACTIVE_CLINICAL for _, code in codings(cond.get("clinicalStatus")))


def _abatement(cond: dict[str, Any]) -> date | None:
    return first_date(cond.get("abatementDateTime"), period_part(cond.get("abatementPeriod"), "end"))


def _certainty(cond: dict[str, Any], mappings: Mappings) -> str | None:
    """ICD-10-GM Diagnosesicherheit of any coding (codes.md v2): the least certain one wins."""
    url = mappings.extensions.get("diagnosis_certainty")
    if not url:
        return None
    code = cond.get("code")
    found: list[str] = []
    for c in as_list(code.get("coding")) if isinstance(code, dict) else []:
        if not isinstance(c, dict):
            continue
        for ext in as_list(c.get("extension")):
            if isinstance(ext, dict) and ext.get("url") == url:
                value = ext.get("valueCoding")
                key = value.get("code") if isinstance(value, dict) else None
                meaning = mappings.diagnosis_certainty.get(key) if isinstance(key, str) else None
                if meaning:
                    found.append(meaning)
    for meaning in ("refuted", "suspected", "history", "confirmed"):
        if meaning in found:
            return meaning
    return None


def adapt(ctx: Ctx, kind: ConditionKind) -> None:
    cond = ctx.resource
    verification = [code for _, code in codings(cond.get("verificationStatus")) if code]
    refuted = [v for v in verification if v in NOT_COUNTING_VERIFICATION]
    if refuted:
        ctx.ignore(f"verificationStatus {refuted[0]!r}: the Condition does not count")
        return
    certainty = _certainty(cond, ctx.mappings)
    if certainty == "refuted":
        ctx.ignore("ICD-10-GM Diagnosesicherheit 'A' (excluded): the Condition does not count")
        return
    suspected_by = next((v for v in verification if v in SUSPECTED_VERIFICATION), None)
    if suspected_by is None and certainty == "suspected":
        suspected_by = "ICD-10-GM Diagnosesicherheit V"
    state = {
        "active": is_active(cond) and certainty != "history",
        "abatement": _abatement(cond),
        "suspected": suspected_by is not None,
        "verification": suspected_by,
    }
    when = clinical_date(cond)
    if kind.concept == "metastasis":
        _metastasis(ctx, kind, when, state)
    elif kind.concept == "primary":
        _primary(ctx, kind, when, state)
    elif kind.concept == "malignancy":
        _malignancy(ctx, kind, when, state)
    elif kind.concept == "prior_malignancy":
        _history(ctx, kind, when, state)
    if kind.transplant is not None:
        t = kind.transplant
        ctx.add("transplant_status", TransplantStatusFact(
            label=f"{t.display} ({t.label})", source=ctx.source(f"liver transplant status: {t.display} ({t.label})",
                                                              when, unverified(t))))
    if kind.concept in ("metastasis", "primary"):
        _grades(ctx, kind, when)


# ---------------------------------------------------------------------------------------------- sites
def _body_sites(ctx: Ctx) -> tuple[list[CodeEntry], int]:
    return body_site_entries(ctx.mappings, ctx.resource.get("bodySite"))


def _located(ctx: Ctx, code_keys: list[str], fallback: str) -> tuple[str, list[CodeEntry], str | None]:
    """A primary-like site from code sites and mapped bodySites (criteria.md §1d "code and bodySite", "several
    codings"): (site key, bodySite entries used, why it is in conflict or None)."""
    m = ctx.mappings
    concrete = [k for k in code_keys if k and m.sites.get(k) is not None and m.site(k).drainage != "unknown"]
    unknown = [k for k in code_keys if k and m.sites.get(k) is not None and m.site(k).drainage == "unknown"]
    code_site, code_conflict = combine_sites(m, concrete)
    if code_conflict:
        return "site_conflict", [], "its codes name sites that do not contain one another"
    body, _ = _body_sites(ctx)
    body_site, body_conflict = combine_sites(m, [e.site for e in body if e.site])
    if body_conflict:
        return "site_conflict", body, "its bodySites name sites that do not contain one another"
    if code_site is None:
        if body_site is not None:
            return body_site, body, None
        return (unknown[0] if unknown else fallback), [], None
    if body_site is None:
        return code_site, [], None
    both, conflict = combine_sites(m, [code_site, body_site])
    if conflict or both is None:
        return "site_conflict", body, (
            f"its code names the {m.site(code_site).label}, its bodySite the {m.site(body_site).label}"
        )
    return both, body, None


# ---------------------------------------------------------------------------------------------- primary
def _primary(ctx: Ctx, kind: ConditionKind, when: date | None, state: dict[str, Any]) -> None:
    m = ctx.mappings
    code_keys = [e.site for e in kind.primaries if e.site and e.site not in ("from-body-site", "unspecified")]
    code_keys += [e.site for e in kind.site_codes if e.site]
    fallback = next((e.fallback_site for e in kind.primaries if e.fallback_site), None) or "unreadable"
    site_key, body, conflict = _located(ctx, code_keys, fallback)
    site = m.site(site_key)
    code = kind.primaries[0] if kind.primaries else (kind.site_codes[0] if kind.site_codes else kind.morphology)
    assert code is not None
    words = f"primary NET: {code.display} ({code.label}), site {site.label}"
    morph = kind.morphology
    if morph is not None and morph is not code:
        words += f", morphology {morph.display} ({morph.label})"
    if state["suspected"]:
        words += f" (suspected: {state['verification']})"
    note = site.note if conflict is None else f"{site.note}: {conflict}"
    carcinoma = any(e.carcinoma for e in kind.primaries) or (morph is not None and morph.carcinoma)
    src = ctx.source(words, when, unverified(*kind.primaries, *kind.site_codes, morph, *body))
    ctx.add("primaries", PrimaryFact(
        site=site_key,
        site_label=site.label,
        group=site.group,
        drainage=site.drainage,
        note=note,
        site_path=m.site_path(site_key),
        carcinoma=carcinoma,
        source=src,
        **state,
    ))


# ---------------------------------------------------------------------------------------------- malignancy
def _malignancy(ctx: Ctx, kind: ConditionKind, when: date | None, state: dict[str, Any]) -> None:
    m = ctx.mappings
    if kind.text is not None:
        label = f"text '{_first_text(ctx)}'"
        mkind = "text"
    else:
        entry = kind.site_codes[0] if kind.site_codes else kind.generic or kind.other or kind.other_morphology
        assert entry is not None
        label = f"{entry.display} ({entry.label})"
        mkind = "site_code" if kind.site_codes else "generic" if kind.generic else "code" if kind.other else "morphology"
    site_key, body, _ = _located(ctx, [e.site for e in kind.site_codes if e.site], "unreadable")
    site = m.site(site_key)
    if kind.other_morphology is not None and mkind != "morphology":
        label += f", morphology {kind.other_morphology.display} ({kind.other_morphology.label})"
    words = f"malignant neoplasm: {label}, site {site.label}"
    if state["suspected"]:
        words += f" (suspected: {state['verification']})"
    src = ctx.source(words, when, unverified(*kind.site_codes, kind.generic, kind.other, kind.other_morphology, *body))
    known = site_key not in ("unreadable", "site_conflict")
    ctx.add("malignancies", MalignancyFact(
        kind=mkind,
        label=label,
        has_morphology=kind.other_morphology is not None,
        site=site_key if known else None,
        site_label=site.label,
        drainage=site.drainage,
        note=site.note,
        site_path=m.site_path(site_key) if known else (),
        source=src,
        **state,
    ))


def _history(ctx: Ctx, kind: ConditionKind, when: date | None, state: dict[str, Any]) -> None:
    e = kind.prior
    assert e is not None
    label = f"{e.display} ({e.label})"
    src = ctx.source(f"personal history of malignancy: {label}", when, unverified(e))
    ctx.add("malignancies", MalignancyFact(kind="history", label=label, source=src,
                                           **{**state, "active": False, "abatement": None}))


def _first_text(ctx: Ctx) -> str:
    texts = texts_of(ctx.resource.get("code"), limit=80)
    return texts[0] if texts else ""


# ---------------------------------------------------------------------------------------------- metastasis
def _metastasis(ctx: Ctx, kind: ConditionKind, when: date | None, state: dict[str, Any]) -> None:
    m = ctx.mappings
    site_key, body = _metastasis_site(ctx, kind)
    if site_key is None:
        location, label = "unspecified", "site not specified"
    else:
        site = m.site(site_key)
        location = "liver" if site_key == "liver" else "review" if site.nodal_review else "extrahepatic"
        label = site.label
    if kind.text is not None:
        words = f"metastasis (by its text '{_first_text(ctx)}', code not mapped), {label}"
    else:
        e = kind.metastases[0]
        words = f"metastasis: {e.display} ({e.label}), {label}"
    if state["suspected"]:
        words += f" (suspected: {state['verification']})"
    src = ctx.source(words, when, unverified(*kind.metastases, *body))
    high = kind.morphology is not None and kind.morphology.high_grade
    ctx.add("metastases", MetastasisFact(
        site=site_key, site_label=label, location=location, text_only=kind.text is not None, high_grade=high,
        source=src, **state,
    ))


def _metastasis_site(ctx: Ctx, kind: ConditionKind) -> tuple[str | None, list[CodeEntry]]:
    """The metastasis site key (None: unspecified or conflicting) and the bodySite entries used."""
    if kind.text is not None:
        return None, []
    m = ctx.mappings
    code_keys = [e.site for e in kind.metastases if e.site and e.site not in ("from-body-site", "unspecified")]
    code_site, conflict = combine_sites(m, code_keys)
    if conflict:
        ctx.unusable("metastasis", "code", "its codes name metastasis sites that do not contain one another; "
                     "the site is unknown", when=clinical_date(ctx.resource))
        return None, []
    body, unmapped = _body_sites(ctx)
    body_site, body_conflict = combine_sites(m, [e.site for e in body if e.site])
    if body_conflict:
        ctx.unusable("metastasis", "bodySite", "its bodySites name sites that do not contain one another; the "
                     "site is unknown", when=clinical_date(ctx.resource))
        return None, body
    if code_site is None:
        if body_site is None and unmapped:
            ctx.unusable("metastasis", "bodySite", "bodySite code is not in the mappings; the metastasis site is "
                         "unspecified", when=clinical_date(ctx.resource))
        return body_site, body
    if body_site is None:
        return code_site, []
    both, conflict = combine_sites(m, [code_site, body_site])
    if conflict:
        ctx.unusable("metastasis", "bodySite", f"its code names the {m.site(code_site).label}, its bodySite the "
                     f"{m.site(body_site).label}; the site is unknown", when=clinical_date(ctx.resource))
        return None, body
    return both, body


# ---------------------------------------------------------------------------------------------- grade
def _grades(ctx: Ctx, kind: ConditionKind, when: date | None) -> None:
    """Grade evidence from morphology and high-grade diagnosis codes, whatever the Condition's status; whether
    it counts (a Condition of the NET only) is decided over the whole record (criteria.md §1a)."""
    morph = kind.morphology
    if morph is not None and (morph.high_grade or morph.grade in (1, 2, 3)):
        grade = 3 if morph.high_grade else morph.grade
        label = f"{morph.display} ({morph.label})"
        src = ctx.source(f"morphology {label}", when, unverified(morph))
        ctx.add("grades", GradeFact(grade=grade, kind="morphology", label=label, at_least=morph.at_least,
                                    source=src))
    for d in kind.primaries:
        if d.high_grade:
            label = f"{d.display} ({d.label})"
            src = ctx.source(f"diagnosis {label}", when, unverified(d))
            ctx.add("grades", GradeFact(grade=3, kind="diagnosis", label=label, source=src))
            break
