"""Observations: Ki-67, liver tumour burden, disease status, extrahepatic staging, grade, liver lesions."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from .._domain import (
    DiseaseStatusFact,
    GradeFact,
    Ki67Fact,
    LesionSizeFact,
    LiverBurdenFact,
    LiverMetastasisCountFact,
    StagingFact,
)
from .._mappings import CodeEntry, Mappings
from ._common import Ctx
from ._values import (
    as_list,
    codings,
    codings_of_all,
    first_date,
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
    "liver_metastasis_count",
    "largest_liver_metastasis",
)
COUNTING_STATUS = ("final", "amended", "corrected")


def classify(obs: dict[str, Any], mappings: Mappings) -> tuple[str, CodeEntry] | None:
    """The concept an Observation's code names (any coding), or None when the rules do not use it."""
    return mappings.classify(CONCEPTS, codings(obs.get("code")))


def clinical_date(obs: dict[str, Any]) -> date | None:
    """effective[x] (a Period: its start), else ``issued`` (criteria.md §1, §3a)."""
    return first_date(
        obs.get("effectiveDateTime"),
        period_part(obs.get("effectivePeriod"), "start"),
        obs.get("effectiveInstant"),
        obs.get("issued"),
    )


def adapt(ctx: Ctx, concept: str, entry: CodeEntry) -> None:
    status = ctx.resource.get("status")
    if status not in COUNTING_STATUS:
        ctx.ignore(f"status {status!r}: only final, amended or corrected Observations count")
        return
    _READERS[concept](ctx, entry, clinical_date(ctx.resource))


# ---------------------------------------------------------------------------------------------- readers
def _ki67(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    p = read_percent(ctx.resource)
    if p.problem:
        ctx.unusable("ki67", p.field, f"Ki-67 value: {p.problem}")
        return
    src = ctx.source(f"Ki-67 {p.words}", when, unverified(entry))
    ctx.add("ki67", Ki67Fact(percent=p.percent, comparator=p.comparator, source=src))


def _liver_burden(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    p = read_percent(ctx.resource)
    if p.problem:
        ctx.unusable("liver_burden", p.field, f"liver tumour burden value: {p.problem}")
        return
    src = ctx.source(f"liver tumour burden {p.words}", when, unverified(entry))
    ctx.add("liver_burden", LiverBurdenFact(percent=p.percent, comparator=p.comparator, source=src))


def _disease_status(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    value = ctx.mappings.match_any("disease_status_values", codings(ctx.resource.get("valueCodeableConcept")))
    if value is None:
        ctx.unusable("disease_status", "valueCodeableConcept", "disease status value is not a known code")
        return
    if value.value not in ("improved", "stable", "worsened"):
        ctx.ignore(f"disease status {value.value!r} ({value.display}) does not count as an assessment")
        return
    src = ctx.source(f"disease status {value.value}", when, unverified(entry, value))
    ctx.add("disease_status", DiseaseStatusFact(trend=value.value, source=src))


def _staging(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    value_entry = None
    if isinstance(obs.get("valueBoolean"), bool):
        present = obs["valueBoolean"]
    else:
        value_entry = ctx.mappings.match_any("presence_values", codings(obs.get("valueCodeableConcept")))
        if value_entry is None or value_entry.value not in ("present", "absent"):
            field = "valueCodeableConcept" if "valueCodeableConcept" in obs else "value[x]"
            ctx.unusable("extrahepatic_staging", field, "staging value is neither a boolean nor present/absent")
            return
        present = value_entry.value == "present"
    words = "extrahepatic disease present" if present else "no extrahepatic disease"
    ctx.add("staging", StagingFact(present=present, source=ctx.source(words, when, unverified(entry, value_entry))))


_GRADE_TEXT = re.compile(r"^\s*(?:g|grade)\s*[-:]?\s*(1|2|3|4|iv|iii|ii|i)\b", re.IGNORECASE)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}


def parse_grade_text(text: Any) -> int | None:
    """``G1``, ``G2``, ``G3``, ``grade 2``, ``Grade II`` -> 1..3 (G4, undifferentiated, is high grade: 3)."""
    if not isinstance(text, str):
        return None
    m = _GRADE_TEXT.match(text)
    if not m:
        return None
    g = m.group(1).lower()
    n = int(g) if g.isdigit() else _ROMAN[g]
    return min(n, 3)


def _grade(ctx: Ctx, entry: CodeEntry, when: date | None) -> None:
    obs = ctx.resource
    vcc = obs.get("valueCodeableConcept")
    value_entry = ctx.mappings.match_any("grade_values", codings(vcc))
    grade = int(value_entry.value) if value_entry is not None and str(value_entry.value) in ("1", "2", "3") else None
    if grade is None:
        grade = _grade_from_text(vcc, obs.get("valueString"))
    if grade is None:
        field = "valueCodeableConcept" if vcc is not None else "valueString" if "valueString" in obs else "value[x]"
        ctx.unusable("histologic_grade", field, "grade value is not a known code nor text such as G1, G2, G3")
        return
    label = f"G{grade}"
    src = ctx.source(f"histologic grade {label}", when, unverified(entry, value_entry))
    ctx.add("grades", GradeFact(grade=grade, kind="grade", label=label, source=src))


def _grade_from_text(vcc: Any, value_string: Any) -> int | None:
    texts: list[Any] = [value_string]
    if isinstance(vcc, dict):
        texts.append(vcc.get("text"))
        for c in as_list(vcc.get("coding")):
            if isinstance(c, dict):
                texts.extend((c.get("display"), c.get("code")))
    for t in texts:
        g = parse_grade_text(t)
        if g is not None:
            return g
    return None


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
    if problem:
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


_READERS = {
    "ki67": _ki67,
    "liver_burden": _liver_burden,
    "disease_status": _disease_status,
    "extrahepatic_staging": _staging,
    "histologic_grade": _grade,
    "liver_metastasis_count": _count,
    "largest_liver_metastasis": _largest,
}
