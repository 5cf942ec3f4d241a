"""Observations: Ki-67, liver tumour burden, disease status, extrahepatic staging, grade, liver lesions."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Callable

from .._domain import (
    DiseaseStatusFact,
    GradeFact,
    Ki67Fact,
    LesionSizeFact,
    LiverBurdenFact,
    LiverMetastasisCountFact,
    MorphologyObservationFact,
    StagingFact,
)
from .._mappings import CodeEntry, Mappings
from ._common import Ctx
from ._text import names_any
from ._values import (
    MAX_VALUE_TEXT,
    as_list,
    codings,
    codings_of_all,
    first_date,
    first_date_span,
    texts_of,
    number_text,
    period_part,
    read_length_mm,
    read_percent,
    resolve_reference,
    unverified,
)

__all__ = ["CONCEPTS", "classify", "adapt", "clinical_date", "parse_grade_text"]

#: Observation concepts, in the order they are tried (codes.yaml sections).
CONCEPTS = (
    "ki67",
    "liver_burden",
    "disease_status",
    "extrahepatic_staging",
    "histologic_grade",
    "morphology_observation",
    "liver_metastasis_count",
    "largest_liver_metastasis",
)
#: (v2) an Observation in no section whose code text or display names Ki-67 (criteria.md §1d)
UNMAPPED_KI67 = "ki67_unmapped"
COUNTING_STATUS = ("final", "amended", "corrected")


def classify(obs: dict[str, Any], mappings: Mappings) -> tuple[str, CodeEntry | None] | None:
    """The concept an Observation's code names (any coding), or None when the rules do not use it; an
    Observation in no section whose code text or display names Ki-67 is ``ki67_unmapped`` (it caps low_grade)."""
    hit = mappings.classify(CONCEPTS, codings(obs.get("code")))
    if hit is not None:
        return hit
    if mappings.text_nets.ki67_names and names_any(texts_of(obs.get("code")), mappings.text_nets.ki67_names):
        return UNMAPPED_KI67, None
    return None


def clinical_date(obs: dict[str, Any]) -> date | None:
    """effective[x] (a Period: its start), else ``issued`` (criteria.md §1, §3a)."""
    return first_date(
        obs.get("effectiveDateTime"),
        period_part(obs.get("effectivePeriod"), "start"),
        obs.get("effectiveInstant"),
        obs.get("issued"),
    )


def clinical_date_latest(obs: dict[str, Any]) -> date | None:
    """The latest day the clinical date allows (a partial ``2025-06`` -> 2025-06-30), criteria.md §3a (v2)."""
    return first_date_span(
        obs.get("effectiveDateTime"),
        period_part(obs.get("effectivePeriod"), "start"),
        obs.get("effectiveInstant"),
        obs.get("issued"),
    )[1]


def links(ctx: Ctx) -> tuple[str, ...]:
    """Conditions named by ``focus`` or the mCODE related-condition extension (criteria.md §1a), resolved to
    ``Condition/id``; whether they are in the data is decided over the whole record."""
    refs: list[Any] = list(as_list(ctx.resource.get("focus")))
    url = ctx.mappings.extensions.get("related_condition")
    for ext in as_list(ctx.resource.get("extension")):
        if isinstance(ext, dict) and url and ext.get("url") == url:
            refs.append(ext.get("valueReference"))
    out: list[str] = []
    for ref in refs:
        target = resolve_reference(ref, ctx.resolve)
        if target and target.startswith("Condition/") and target not in out:
            out.append(target)
    return tuple(out)


def adapt(ctx: Ctx, concept: str, entry: CodeEntry | None) -> None:
    status = ctx.resource.get("status")
    if status not in COUNTING_STATUS:
        ctx.ignore(f"status {status!r}: only final, amended or corrected Observations count")
        return
    when = clinical_date(ctx.resource)
    if entry is None:  # only a Ki-67 named by its text under a code the mappings lack comes without an entry
        if concept != UNMAPPED_KI67:
            raise ValueError(f"no code entry for the {concept} Observation")  # a bug: adapt_resource reports it
        _ki67_unmapped(ctx, None, when)
        return
    _READERS[concept](ctx, entry, when)


# ---------------------------------------------------------------------------------------------- readers
def _ki67(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    p = read_percent(ctx.resource)
    linked = links(ctx)
    if p.problem:
        ctx.unusable("ki67", p.field, f"Ki-67 value: {p.problem}", when=when, links=linked)
        return
    src = ctx.source(f"Ki-67 {p.words}", when, unverified(entry))
    ctx.add("ki67", Ki67Fact(percent=p.percent, comparator=p.comparator, links=linked,
                             requires_link=entry.requires_link, source=src))


def _ki67_unmapped(ctx: Ctx, entry: CodeEntry | None, when: date | None) -> None:
    texts = texts_of(ctx.resource.get("code"), limit=80)
    ctx.unusable("ki67", "code", f"names Ki-67 ('{texts[0] if texts else ''}') under a code that is not in the "
                 "mappings, so its value cannot be read as a Ki-67 index", when=when, links=links(ctx))


def _liver_burden(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    p = read_percent(ctx.resource)
    if p.problem:
        ctx.unusable("liver_burden", p.field, f"liver tumour burden value: {p.problem}", when=when)
        return
    src = ctx.source(f"liver tumour burden {p.words}", when, unverified(entry))
    ctx.add("liver_burden", LiverBurdenFact(percent=p.percent, comparator=p.comparator, source=src))


def _disease_status(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    value = ctx.mappings.match_any("disease_status_values", codings(ctx.resource.get("valueCodeableConcept")))
    linked = links(ctx)
    if value is None or value.value not in ("improved", "stable", "worsened", "undetermined"):
        ctx.unusable("disease_status", "valueCodeableConcept", "disease status value is not a known code",
                     when=when, links=linked)
        return
    src = ctx.source(f"disease status {value.value}", when, unverified(entry, value))
    latest = clinical_date_latest(ctx.resource)
    ctx.add("disease_status", DiseaseStatusFact(trend=value.value, links=linked,
                                                latest_date=latest if latest != when else None, source=src))


def _staging(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    value_entry = None
    if isinstance(obs.get("valueBoolean"), bool):
        present = obs["valueBoolean"]
    else:
        value_entry = ctx.mappings.match_any("presence_values", codings(obs.get("valueCodeableConcept")))
        if value_entry is None or value_entry.value not in ("present", "absent"):
            field = "valueCodeableConcept" if "valueCodeableConcept" in obs else "value[x]"
            ctx.unusable("extrahepatic_staging", field, "staging value is neither a boolean nor present/absent",
                         when=when)
            return
        present = value_entry.value == "present"
    words = "extrahepatic disease present" if present else "no extrahepatic disease"
    ctx.add("staging", StagingFact(present=present, source=ctx.source(words, when, unverified(entry, value_entry))))


#: a grade named in text: ``G2``, ``grade 2``, ``Grade II``, optionally followed by a second grade (``G1-G2``,
#: ``G1/2``, ``grade 1-2``). Linear: literal prefixes, single-class runs; only run on texts of bounded length.
_GRADE_TEXT = re.compile(
    r"\b(?:g|grade)[ :]{0,2}(4|3|2|1|iv|iii|ii|i)\b(?:[ ]?(?:-|/|–|to|or)[ ]?(?:g|grade)?[ ]?(4|3|2|1|iv|iii|ii|i)\b)?"
)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_HIGH_WORDS = ("undifferentiated", "high grade", "high-grade")
_LOW_WORDS = ("low grade", "low-grade")
_INTERMEDIATE_WORDS = ("intermediate grade", "intermediate-grade")


def parse_grade_text(text: Any) -> int | None:
    """The grade a text names (criteria.md §1b, §1d, codes.md v2): ``G1``, ``grade 2``, ``Grade II``; a text naming
    several grades (``G1-G2``, ``G1/2``, ``G1, focally G2``) is its highest; ``G4`` and ``undifferentiated`` (and
    ``high grade``) are high grade (3); ``low grade`` means G1 or G2 and reads as 2 (it does not prove a Ki-67
    below 3 %). None: no grade in it (or a text longer than MAX_VALUE_TEXT, never pattern-matched)."""
    if not isinstance(text, str) or len(text) > MAX_VALUE_TEXT:
        return None
    low = " ".join(text.lower().split())
    found: list[int] = []
    for m in _GRADE_TEXT.finditer(low):
        for g in m.groups():
            if g:
                found.append(min(int(g) if g.isdigit() else _ROMAN[g], 3))
    if any(w in low for w in _HIGH_WORDS):
        found.append(3)
    if not found and any(w in low for w in _INTERMEDIATE_WORDS + _LOW_WORDS):
        found.append(2)  # "low grade" is G1 or G2: read as G2 (it does not prove a Ki-67 below 3 %)
    return max(found) if found else None


def _grade_label(text_grade: int, texts: list[Any]) -> str:
    lowered = " ".join(t.lower() for t in texts if isinstance(t, str) and len(t) <= MAX_VALUE_TEXT)
    if text_grade == 2 and any(w in lowered for w in _LOW_WORDS) and not _GRADE_TEXT.search(lowered) and \
            not any(w in lowered for w in _INTERMEDIATE_WORDS):
        return "low grade (G1 or G2)"
    return f"G{text_grade}"


def _grade(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    vcc = obs.get("valueCodeableConcept")
    linked = links(ctx)
    value_entry = ctx.mappings.match_any("grade_values", codings(vcc))
    grade = int(str(value_entry.value)) if value_entry is not None and str(value_entry.value) in ("1", "2", "3") else None
    label = f"G{grade}" if grade else ""
    if grade is None:
        texts = _grade_texts(vcc, obs.get("valueString"))
        found = [g for g in (parse_grade_text(t) for t in texts) if g is not None]
        if found:
            grade = max(found)
            label = _grade_label(grade, texts)
    if grade is None:
        field = "valueCodeableConcept" if vcc is not None else "valueString" if "valueString" in obs else "value[x]"
        ctx.unusable("histologic_grade", field, "grade value is not a known code nor text such as G1, G2, G3",
                     when=when, links=linked)
        return
    src = ctx.source(f"histologic grade {label}", when, unverified(entry, value_entry))
    ctx.add("grades", GradeFact(grade=grade, kind="grade", label=label, links=linked, source=src))


def _grade_texts(vcc: Any, value_string: Any) -> list[Any]:
    texts: list[Any] = [value_string]
    if isinstance(vcc, dict):
        texts.append(vcc.get("text"))
        for c in as_list(vcc.get("coding")):
            if isinstance(c, dict):
                texts.extend((c.get("display"), c.get("code")))
    return [t for t in texts if isinstance(t, str)]


def _morphology_observation(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    """(v2) LOINC 59847-4 (ICD-O-3 histology and behaviour), as the German MII oncology data writes it."""
    obs = ctx.resource
    linked = links(ctx)
    found = [f for f in (ctx.mappings.match("morphology", s, c) for s, c in codings(obs.get("valueCodeableConcept")))
             if f is not None]
    if not found:
        ctx.unusable("histologic_grade", "valueCodeableConcept", "morphology value is not a known ICD-O-3 code",
                     when=when, links=linked)
        return
    found.sort(key=lambda e: (not e.net, not e.high_grade, -(e.grade or 0)))
    m = found[0]
    label = f"{m.display} ({m.label})"
    src = ctx.source(f"morphology {label}", when, unverified(entry, m))
    ctx.add("morphology_observations", MorphologyObservationFact(net=m.net, carcinoma=m.carcinoma, label=label,
                                                                 links=linked, source=src))
    if m.net and (m.high_grade or m.grade in (1, 2, 3)):
        ctx.add("grades", GradeFact(grade=3 if m.high_grade else m.grade, kind="morphology", label=label,
                                    at_least=m.at_least, links=linked, source=src))


def _count(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    value = obs.get("valueInteger")
    if value is None and isinstance(obs.get("valueQuantity"), dict):
        value = obs["valueQuantity"].get("value")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        ctx.unusable("liver_metastasis_count", "valueInteger", "the number of liver metastases is not a whole number")
        return
    src = ctx.source(f"{value} liver metastas{'is' if value == 1 else 'es'}", when, unverified(entry))
    ctx.add("liver_metastasis_counts", LiverMetastasisCountFact(count=value, source=src))


def _largest(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    site = ctx.mappings.match_any("body_sites", codings_of_all(obs.get("bodySite")))
    on_liver = site is not None and site.site == "liver"
    focus = _condition_focus(ctx)
    if not on_liver and not focus:
        ctx.ignore("tumour size with neither a bodySite on the liver nor a focus on a liver metastasis")
        return
    mm, field, problem = read_length_mm(_size_holder(ctx, obs))
    if problem or mm is None:  # (mm is None only with a problem)
        ctx.unusable("largest_liver_metastasis", field, f"tumour size: {problem}")
        return
    src = ctx.source(f"largest liver metastasis {number_text(mm)} mm", when, unverified(entry, site if on_liver else None))
    fact = LesionSizeFact(mm=mm, source=src)
    if on_liver:
        ctx.add("largest_liver_metastasis", fact)
    else:
        ctx.out.pending.append(("largest_liver_metastasis", fact, focus))


def _size_holder(ctx: Ctx, obs: dict[str, Any]) -> dict[str, Any]:
    """The Observation, or its size component (LOINC 21889-1 carries the size as component 33728-7)."""
    if "valueQuantity" in obs:
        return obs
    for comp in as_list(obs.get("component")):
        if isinstance(comp, dict) and "valueQuantity" in comp:
            if ctx.mappings.match_any("largest_liver_metastasis", codings(comp.get("code"))) is not None:
                return comp
    return obs


def _condition_focus(ctx: Ctx) -> tuple[str, ...]:
    """The Conditions an Observation's ``focus`` names (resolved to ``Condition/id``)."""
    out = []
    for ref in as_list(ctx.resource.get("focus")):
        target = resolve_reference(ref, ctx.resolve)
        if target and target.startswith("Condition/"):
            out.append(target)
    return tuple(out)


_READERS: dict[str, Callable[[Ctx, CodeEntry, date | None], None]] = {
    "ki67": _ki67,
    "liver_burden": _liver_burden,
    "disease_status": _disease_status,
    "extrahepatic_staging": _staging,
    "histologic_grade": _grade,
    "morphology_observation": _morphology_observation,
    UNMAPPED_KI67: _ki67_unmapped,
    "liver_metastasis_count": _count,
    "largest_liver_metastasis": _largest,
}
