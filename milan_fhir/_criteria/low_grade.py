"""``low_grade`` — low-grade histology (criteria.md §3, §3a, §4).

Rule-set mode ``ki67``: Ki-67 below [ki67_limit_percent]; the highest value counts; any high-grade evidence
(G3, carcinoma morphology or diagnosis) is ``not_met`` whatever the Ki-67; without a usable Ki-67, G1 meets and
G2 needs a Ki-67 value.
Rule-set mode ``grade``: G1 or G2 meet, G3 or carcinoma do not; Ki-67 is turned into a grade by
[grade_ki67_cutoffs] (below the first: G1; up to the second: G2; above it: G3).
"""

from __future__ import annotations

from datetime import date

from .._domain import CriterionResult, GradeFact, Ki67Fact, PatientRecord, RuleSet, Source, Status
from ._common import cite, counts_existence, decides_high, fmt_pct, fmt_value, result, unusable_clause, unusable_of, valid_percent

NAME = "low_grade"
_CONCEPTS = ("ki67", "histologic_grade", "grade")
_KI67 = "a Ki-67 index (LOINC 29593-1) on the primary or a metastasis"
_EXACT_KI67 = "an exact Ki-67 index (LOINC 29593-1, a value rather than a bound) on the primary or a metastasis"
_GRADE = "a histologic grade (LOINC 21858-6: G1, G2 or G3) of the primary or a metastasis"


def _cite_grade(g: GradeFact) -> str:
    return f"{g.label} ({cite(g.source)})"


def _cite_ki67(k: Ki67Fact) -> str:
    return f"{fmt_value(k.percent, k.comparator)} ({cite(k.source)})"


def _highest(values: list[Ki67Fact]) -> Ki67Fact:
    return max(values, key=lambda k: (k.percent, k.source.reference))


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    grades = [g for g in record.grades if counts_existence(g.source, as_of)]
    ki67_all = [k for k in record.ki67 if counts_existence(k.source, as_of)]
    ki67 = [k for k in ki67_all if valid_percent(k.percent)]
    notes = [unusable_clause(unusable_of(record, _CONCEPTS))]
    if len(ki67) < len(ki67_all):
        notes.append("Ki-67 values that are not valid percentages not used: " + ", ".join(
            k.source.reference for k in ki67_all if not valid_percent(k.percent)))

    grade_mode = rules.low_grade_mode == "grade"
    g1_max, g2_max = rules.grade_ki67_cutoffs
    if grade_mode:
        threshold, inclusive = g2_max, False  # G3 when above the second cut-off
    else:
        threshold, inclusive = rules.ki67_limit_percent, True  # at or above the limit
    decided = [(k, decides_high(k.percent, k.comparator, threshold, inclusive)) for k in ki67]

    # 1. High-grade evidence settles it whatever else is recorded.
    high_grades = [g for g in grades if g.grade == 3]
    high_ki67 = [k for k, d in decided if d is True]
    if high_grades or high_ki67:
        clauses = []
        evidence: list[Source] = []
        if high_grades:
            clauses.append(
                "High-grade evidence " + ", ".join(_cite_grade(g) for g in high_grades)
                + " rules out low-grade histology whatever the Ki-67"
            )
            evidence += [g.source for g in high_grades]
        if high_ki67:
            top = _highest(high_ki67)
            if grade_mode:
                clauses.append(
                    f"Highest Ki-67 is {_cite_ki67(top)}, above the {fmt_pct(g2_max)} % cut-off of grade G3 "
                    f"(WHO 2019), which {rules.name} does not accept"
                )
            else:
                clauses.append(
                    f"Highest Ki-67 is {_cite_ki67(top)}, at or above the {fmt_pct(threshold)} % limit of {rules.name}"
                )
            evidence.append(top.source)
        reason = "; ".join(clauses)
        return result(NAME, Status.NOT_MET, reason, evidence)

    # 2. Ki-67 values present, none high.
    if ki67:
        undecided = [k for k, d in decided if d is None]
        if undecided:
            bounds = ", ".join(_cite_ki67(k) for k in undecided)
            if grade_mode:
                why = f"could be above the {fmt_pct(g2_max)} % cut-off of grade G3, so the grade is not settled"
            else:
                why = f"does not show whether the highest Ki-67 is below the {fmt_pct(threshold)} % limit of {rules.name}"
            others = [k for k, d in decided if d is False]
            if others:
                why += f" (other Ki-67 values up to {_cite_ki67(_highest(others))})"
            return result(
                NAME,
                Status.INDETERMINATE,
                f"Ki-67 {bounds} {why}",
                evidence=[k.source for k in ki67],
                missing=(_EXACT_KI67,) if not grade_mode else (_EXACT_KI67, _GRADE),
                notes=notes,
            )
        top = _highest(ki67)
        if grade_mode:
            if all(decides_high(k.percent, k.comparator, g1_max, True) is False for k in ki67):
                derived = f"grade G1 (below {fmt_pct(g1_max)} %)"
            elif top.comparator is None:
                derived = f"grade G2 ({fmt_pct(g1_max)} to {fmt_pct(g2_max)} %)"
            else:
                derived = f"grade G1 or G2 (at most {fmt_pct(g2_max)} %)"
            low = [g for g in grades if g.grade in (1, 2)]
            tail = ""
            if low:
                tail = "; grade findings " + ", ".join(_cite_grade(g) for g in low)
            return result(
                NAME,
                Status.MET,
                f"Highest Ki-67 is {_cite_ki67(top)}, {derived} by the WHO 2019 cut-offs{tail}; "
                f"G1 or G2 meets {rules.name}",
                evidence=[k.source for k in ki67] + [g.source for g in low],
            )
        return result(
            NAME,
            Status.MET,
            f"Highest Ki-67 is {_cite_ki67(top)}, below the {fmt_pct(threshold)} % limit of {rules.name}",
            evidence=[k.source for k in ki67],
        )

    # 3. No usable Ki-67: the grade decides, if it can.
    if grades:
        top_grade = max(g.grade for g in grades)
        at_top = [g for g in grades if g.grade == top_grade]
        cited = ", ".join(_cite_grade(g) for g in at_top)
        # The Ki-67 range a grade implies, as a bound: G1 below the first cut-off, G2 up to the second.
        grade_bound = (g1_max, "<") if top_grade == 1 else (g2_max, "<=")
        settles = grade_mode or decides_high(grade_bound[0], grade_bound[1], threshold, inclusive) is False
        if settles:
            rule = (
                f"G1 or G2 meets {rules.name}" if grade_mode
                else f"G{top_grade} means Ki-67 {grade_bound[1]}{fmt_pct(grade_bound[0])} %, below the "
                f"{fmt_pct(threshold)} % limit of {rules.name}"
            )
            return result(
                NAME,
                Status.MET,
                f"Highest grade is {cited}, no Ki-67 value recorded; {rule}",
                evidence=[g.source for g in at_top],
                notes=notes,
            )
        # G2 in Ki-67 mode: spans the limit.
        span = f"below {fmt_pct(g1_max)} %" if top_grade == 1 else f"{fmt_pct(g1_max)} to {fmt_pct(g2_max)} %"
        return result(
            NAME,
            Status.INDETERMINATE,
            f"Highest grade is {cited}, which spans Ki-67 {span}, "
            f"so a Ki-67 value is needed to compare with the {fmt_pct(threshold)} % limit of {rules.name}",
            evidence=[g.source for g in at_top],
            missing=(_KI67,),
            notes=notes,
        )
    return result(
        NAME,
        Status.INDETERMINATE,
        "No usable Ki-67 value or histologic grade is recorded",
        missing=(_KI67,) if not grade_mode else (_KI67, _GRADE),
        notes=notes,
    )
