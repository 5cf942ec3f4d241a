"""``low_grade`` — low-grade histology (criteria.md §3, §3a, §4, §1a, §1b, §1d).

Evidence counts only for the NET (§1a): a Ki-67 or grade about another tumour is dropped; an unlinked one beside
another malignancy is ambiguous and cannot make the criterion met or not met by itself.

Rule-set mode ``ki67``: Ki-67 below [ki67_limit_percent]; the highest value counts; any high-grade evidence
(G3, carcinoma morphology or diagnosis) is ``not_met`` whatever the Ki-67; an unusable Ki-67 or grade caps at
``indeterminate`` (§1b); without a usable Ki-67, G1 meets and G2 needs a Ki-67 value.
Rule-set mode ``grade``: G1 or G2 meet, G3 or carcinoma do not; Ki-67 is turned into a grade by
[grade_ki67_cutoffs] (below the first: G1; up to the second: G2; above it: G3). A "G2 or higher" finding (ICD-O-3
8249/3) under ``open_grade_reading: open`` is settled only by an explicit G2 or a Ki-67 of 3-20 % (met), or by
G3 evidence or a Ki-67 above 20 % (not met).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from .._domain import Comparator, CriterionResult, GradeFact, Ki67Fact, PatientRecord, RuleSet, Source, Status, Unusable
from ._attribution import net_view
from ._common import cite, counts_existence, decides_high, fmt_pct, fmt_value, result, valid_percent

NAME = "low_grade"
_KI67 = "a Ki-67 index (LOINC 29593-1) on the primary or a metastasis"
_EXACT_KI67 = "an exact Ki-67 index (LOINC 29593-1, a value rather than a bound) on the primary or a metastasis"
_GRADE = "a histologic grade (LOINC 21858-6: G1, G2 or G3) of the primary or a metastasis"
_LINK = "Observation.focus linking the value to the NET, or a NET-specific value"


def _cite_grade(g: GradeFact) -> str:
    return f"{g.label} ({cite(g.source)})"


def _cite_ki67(k: Ki67Fact) -> str:
    return f"{fmt_value(k.percent, k.comparator)} ({cite(k.source)})"


def _highest(values: list[Ki67Fact]) -> Ki67Fact:
    return max(values, key=lambda k: (k.percent, k.comparator in (">", ">="), k.source.reference))


def _cite_unusable(u: Unusable) -> str:
    return f"{u.reference} ({u.field}: {u.reason})"


@dataclass
class _Evidence:
    """What counts for the NET as of the date (§1a): grades and Ki-67 values (ambiguous ones marked), the
    unusable ones, and the limit the rule set compares with."""

    rules: RuleSet
    grades: list[GradeFact]
    ki67: list[Ki67Fact]  # the valid percentages
    bad: list[Unusable]  # Ki-67 or grade values that could not be read
    bad_ref: list[Ki67Fact]  # Ki-67 values that are not a valid percentage
    ambiguous: dict[str, str]  # reference -> why it may be another tumour's
    grade_mode: bool
    g1_max: float
    g2_max: float
    threshold: float
    inclusive: bool
    decided: list[tuple[Ki67Fact, bool | None]] = field(default_factory=list)

    def is_amb(self, s: Source) -> bool:
        return s.reference in self.ambiguous


def _gather(record: PatientRecord, rules: RuleSet, as_of: date) -> _Evidence:
    view = net_view(record, rules, as_of)
    ambiguous: dict[str, str] = {}
    grades: list[GradeFact] = []
    for g in record.grades:
        if not counts_existence(g.source, as_of):
            continue
        a = view.grade(g)
        if a.kind == "other":
            continue
        if a.kind == "ambiguous":
            ambiguous[g.source.reference] = a.why
        grades.append(g)
    ki67_all: list[Ki67Fact] = []
    for k in record.ki67:
        if not counts_existence(k.source, as_of):
            continue
        a = view.attribute(k.links, k.source.date, requires_link=k.requires_link)
        if a.kind == "other":
            continue
        if a.kind == "ambiguous":
            ambiguous[k.source.reference] = a.why
        ki67_all.append(k)
    bad = [u for u in record.unusable if u.concept in ("ki67", "histologic_grade")
           and (u.date is None or u.date <= as_of) and view.attribute(u.links, u.date).kind != "other"]
    grade_mode = rules.low_grade_mode == "grade"
    g1_max, g2_max = rules.grade_ki67_cutoffs
    if grade_mode:
        threshold, inclusive = g2_max, False  # G3 when above the second cut-off
    else:
        threshold, inclusive = rules.ki67_limit_percent, True  # at or above the limit
    e = _Evidence(
        rules=rules, grades=grades, ki67=[k for k in ki67_all if valid_percent(k.percent)], bad=bad,
        bad_ref=[k for k in ki67_all if not valid_percent(k.percent)], ambiguous=ambiguous, grade_mode=grade_mode,
        g1_max=g1_max, g2_max=g2_max, threshold=threshold, inclusive=inclusive,
    )
    e.decided = [(k, decides_high(k.percent, k.comparator, threshold, inclusive)) for k in e.ki67]
    return e


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    e = _gather(record, rules, as_of)
    return _high_grade(e) or _blocked(e) or _by_ki67(e) or _by_grade(e)


def _high_grade(e: _Evidence) -> CriterionResult | None:
    """1. High-grade evidence settles it whatever else is recorded (ambiguous evidence cannot, §1a)."""
    rules = e.rules
    firm_high_grades = [g for g in e.grades if g.grade == 3 and not e.is_amb(g.source)]
    firm_high_ki67 = [k for k, d in e.decided if d is True and not e.is_amb(k.source)]
    if not (firm_high_grades or firm_high_ki67):
        return None
    clauses = []
    evidence: list[Source] = []
    if firm_high_grades:
        clauses.append(
            "High-grade evidence " + ", ".join(_cite_grade(g) for g in firm_high_grades)
            + " rules out low-grade histology whatever the Ki-67"
        )
        evidence += [g.source for g in firm_high_grades]
    if firm_high_ki67:
        top = _highest(firm_high_ki67)
        if e.grade_mode:
            clauses.append(
                f"Highest Ki-67 is {_cite_ki67(top)}, above the {fmt_pct(e.g2_max)} % cut-off of grade G3 "
                f"(WHO 2019), which {rules.name} does not accept"
            )
        else:
            clauses.append(
                f"Highest Ki-67 is {_cite_ki67(top)}, at or above the {fmt_pct(e.threshold)} % limit of {rules.name}"
            )
        evidence.append(top.source)
    return result(NAME, Status.NOT_MET, "; ".join(clauses), evidence)


def _blocked(e: _Evidence) -> CriterionResult | None:
    """2. Nothing firm rules it out; what stops it from being met (criteria.md §1b, §1d)?"""
    blockers: list[str] = []
    block_missing: list[str] = []
    block_evidence: list[Source] = []
    amb_high = [*(g.source for g in e.grades if g.grade == 3), *(k.source for k, d in e.decided if d is True)]
    if amb_high:
        s = amb_high[0]
        blockers.append(f"high-grade evidence {s.value or s.reference} ({cite(s)}) may be another tumour's: "
                        f"{e.ambiguous[s.reference]}")
        block_evidence += amb_high
        block_missing.append(_LINK)
    if e.bad or e.bad_ref:
        names = [_cite_unusable(u) for u in e.bad] + [f"{k.source.reference} (not a valid percentage)"
                                                      for k in e.bad_ref]
        blockers.append("Ki-67 or grade that cannot be read: " + ", ".join(names))
        block_missing.append("a readable value for " + ", ".join([u.reference for u in e.bad]
                                                                  + [k.source.reference for k in e.bad_ref]))
    if not blockers:
        return None
    also = ""
    if e.ki67:
        also = f" (highest usable Ki-67 {_cite_ki67(_highest(e.ki67))})"
    elif e.grades:
        top = max(e.grades, key=lambda g: g.grade)
        also = f" (highest grade {_cite_grade(top)})"
    return result(NAME, Status.INDETERMINATE, "Not settled: " + "; ".join(blockers) + also,
                  evidence=block_evidence, missing=block_missing + ([_KI67] if not e.ki67 else []))


def _by_ki67(e: _Evidence) -> CriterionResult | None:
    """3. Ki-67 values present, none high."""
    if not e.ki67:
        return None
    rules = e.rules
    undecided = [k for k, d in e.decided if d is None]
    if undecided:
        bounds = ", ".join(_cite_ki67(k) for k in undecided)
        if e.grade_mode:
            why = f"could be above the {fmt_pct(e.g2_max)} % cut-off of grade G3, so the grade is not settled"
        else:
            why = f"does not show whether the highest Ki-67 is below the {fmt_pct(e.threshold)} % limit of {rules.name}"
        others = [k for k, d in e.decided if d is False]
        if others:
            why += f" (other Ki-67 values up to {_cite_ki67(_highest(others))})"
        return result(
            NAME,
            Status.INDETERMINATE,
            f"Ki-67 {bounds} {why}",
            evidence=[k.source for k in e.ki67],
            missing=(_EXACT_KI67,) if not e.grade_mode else (_EXACT_KI67, _GRADE),
        )
    top = _highest(e.ki67)
    if e.is_amb(top.source):
        return result(
            NAME, Status.INDETERMINATE,
            f"Highest Ki-67 is {_cite_ki67(top)}, but it may be another tumour's: {e.ambiguous[top.source.reference]}",
            evidence=[top.source], missing=(_LINK,),
        )
    if e.grade_mode:
        return _grade_mode_with_ki67(rules, e.ki67, e.grades, top, e.is_amb)
    return result(
        NAME,
        Status.MET,
        f"Highest Ki-67 is {_cite_ki67(top)}, below the {fmt_pct(e.threshold)} % limit of {rules.name}",
        evidence=[k.source for k in e.ki67 if not e.is_amb(k.source)],
    )


def _by_grade(e: _Evidence) -> CriterionResult:
    """4. No usable Ki-67: the grade decides, if it can."""
    rules, g1_max, g2_max = e.rules, e.g1_max, e.g2_max
    if not e.grades:
        return result(
            NAME,
            Status.INDETERMINATE,
            "No usable Ki-67 value or histologic grade is recorded",
            missing=(_KI67,) if not e.grade_mode else (_KI67, _GRADE),
        )
    top_grade = max(g.grade for g in e.grades)
    # in date then reference order, so that the reason does not depend on the order the input came in
    at_top = sorted((g for g in e.grades if g.grade == top_grade),
                    key=lambda g: (g.source.date or date.min, g.source.reference))
    cited = ", ".join(_cite_grade(g) for g in at_top)
    firm = [g for g in at_top if not e.is_amb(g.source)]
    if not firm:
        g = at_top[0]
        return result(NAME, Status.INDETERMINATE,
                      f"Highest grade is {cited}, but it may be another tumour's: {e.ambiguous[g.source.reference]}",
                      evidence=[g.source], missing=(_LINK, _KI67))
    open_findings = [g for g in at_top if g.at_least and rules.open_grade_reading == "open"]
    if e.grade_mode and open_findings and not any(g.grade == 2 and not g.at_least for g in firm):
        return result(
            NAME,
            Status.INDETERMINATE,
            f"Highest grade is {cited}: G2 or higher (ICD-O-3.2 uses 8249/3 for G3 too), which {rules.name} "
            "settles only with an explicit G2 finding or a Ki-67 of "
            f"{fmt_pct(g1_max)}-{fmt_pct(g2_max)} % (met), or G3 evidence or a Ki-67 above {fmt_pct(g2_max)} % "
            "(not met)",
            evidence=[g.source for g in at_top],
            missing=(_GRADE, _KI67),
        )
    # The Ki-67 range a grade implies, as a bound: G1 below the first cut-off, G2 up to the second.
    grade_bound: tuple[float, Comparator] = (g1_max, "<") if top_grade == 1 else (g2_max, "<=")
    settles = e.grade_mode or decides_high(grade_bound[0], grade_bound[1], e.threshold, e.inclusive) is False
    if settles:
        rule = (
            f"G1 or G2 meets {rules.name}" if e.grade_mode
            else f"G{top_grade} means Ki-67 {grade_bound[1]}{fmt_pct(grade_bound[0])} %, below the "
            f"{fmt_pct(e.threshold)} % limit of {rules.name}"
        )
        return result(
            NAME,
            Status.MET,
            f"Highest grade is {cited}, no Ki-67 value recorded; {rule}",
            evidence=[g.source for g in firm],
        )
    # G2 in Ki-67 mode: spans the limit.
    span = f"below {fmt_pct(g1_max)} %" if top_grade == 1 else f"{fmt_pct(g1_max)} to {fmt_pct(g2_max)} %"
    return result(
        NAME,
        Status.INDETERMINATE,
        f"Highest grade is {cited}, which spans Ki-67 {span}, "
        f"so a Ki-67 value is needed to compare with the {fmt_pct(e.threshold)} % limit of {rules.name}",
        evidence=[g.source for g in at_top],
        missing=(_KI67,),
    )


def _grade_mode_with_ki67(rules: RuleSet, ki67: list[Ki67Fact], grades: list[GradeFact], top: Ki67Fact,
                          is_amb: Callable[[Source], bool]) -> CriterionResult:
    g1_max, g2_max = rules.grade_ki67_cutoffs
    if all(decides_high(k.percent, k.comparator, g1_max, True) is False for k in ki67):
        derived = f"grade G1 (below {fmt_pct(g1_max)} %)"
        ki_g2 = False
    elif top.comparator is None:
        derived = f"grade G2 ({fmt_pct(g1_max)} to {fmt_pct(g2_max)} %)"
        ki_g2 = True
    else:
        derived = f"grade G1 or G2 (at most {fmt_pct(g2_max)} %)"
        ki_g2 = decides_high(top.percent, top.comparator, g1_max, True) is True
    open_findings = [g for g in grades if g.at_least and rules.open_grade_reading == "open"]
    explicit_g2 = any(g.grade == 2 and not g.at_least and not is_amb(g.source) for g in grades)
    if open_findings and not (ki_g2 or explicit_g2):
        o = open_findings[0]
        return result(
            NAME,
            Status.INDETERMINATE,
            f"{_cite_grade(o)} means G2 or higher, and the highest Ki-67 {_cite_ki67(top)} ({derived}) does not "
            f"settle which; {rules.name} needs an explicit G2 finding or a Ki-67 of {fmt_pct(g1_max)}-"
            f"{fmt_pct(g2_max)} %",
            evidence=[o.source, top.source],
            missing=(_GRADE, _EXACT_KI67),
        )
    low = [g for g in grades if g.grade in (1, 2) and not is_amb(g.source)]
    tail = "; grade findings " + ", ".join(_cite_grade(g) for g in low) if low else ""
    return result(
        NAME,
        Status.MET,
        f"Highest Ki-67 is {_cite_ki67(top)}, {derived} by the WHO 2019 cut-offs{tail}; G1 or G2 meets {rules.name}",
        evidence=[k.source for k in ki67 if not is_amb(k.source)] + [g.source for g in low],
    )
