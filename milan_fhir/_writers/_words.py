"""The one registry of words every writer uses: criterion labels and order, status and verdict words, cautions.

The JSON line, the terminal table, the RiskAssessment narrative and the cohort report all take their words and
their order from here, so a new criterion (or caution) touches its own module, :data:`_domain.CRITERIA` (or
:data:`_domain.CAUTION_CODES`), this registry and their tests only. ``tests/test_writers_words.py`` checks that
every criterion and caution of the domain has its words here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from .._domain import (
    CAPPING_CAUTIONS,
    CAUTION_CODES,
    CRITERIA,
    EXCLUDING_CAUTIONS,
    Caution,
    RuleSet,
    Status,
    Verdict,
)

__all__ = [
    "CRITERION_LABELS",
    "STATUS_WORDS",
    "VERDICT_WORDS",
    "VERDICT_DISPLAY",
    "CAUTION_LABELS",
    "CAUTION_EFFECTS",
    "CAUTION_STEP_LABELS",
    "CAUTION_STEP_SHORT",
    "caution_effect",
    "criterion_label",
    "criterion_phrase",
    "criterion_phrases",
    "criterion_failed_short",
    "criterion_missing_short",
    "STATUS_ICONS",
    "VERDICT_SHORT",
    "caution_label",
    "ordered_criteria",
    "ordered_cautions",
]

#: Human labels of the criteria (tables, narratives), keyed by the names of ``_domain.CRITERIA``.
CRITERION_LABELS: dict[str, str] = {
    "age": "Age",
    "low_grade": "Low-grade histology",
    "liver_burden": "Liver tumour burden",
    "primary_resected_portal": "Primary resected, portal drainage",
    "stable_disease": "Stable disease",
    "no_extrahepatic_disease": "No extrahepatic disease",
}


def _fmt(x: float) -> str:
    return f"{x:g}"


def _grade_phrase(r: RuleSet) -> str:
    if r.low_grade_mode == "ki67":
        return f"low grade (Ki-67 below {_fmt(r.ki67_limit_percent)} %)"
    return "low grade (G1 or G2)"


#: Short phrases with the rule set's numbers (cohort summary and report), one function per criterion.
_PHRASES: dict[str, Callable[[RuleSet], str]] = {
    "age": lambda r: f"age at most {r.age_max_years} years",
    "low_grade": _grade_phrase,
    "liver_burden": lambda r: (
        f"liver involvement {'at most' if r.liver_burden_inclusive else 'below'} "
        f"{_fmt(r.liver_burden_limit_percent)} %"
    ),
    "primary_resected_portal": lambda r: "primary portal-drained and resected",
    "stable_disease": lambda r: f"stable disease at least {r.stable_months} months",
    "no_extrahepatic_disease": lambda r: "no disease outside the liver",
}

#: Not-met criteria in a few words with the rule set's limit (the CDS card summary), one function per criterion.
_FAILED_SHORT: dict[str, Callable[[RuleSet], str]] = {
    "age": lambda r: f"age > {r.age_max_years} years",
    "low_grade": lambda r: (
        f"Ki-67 ≥ {r.ki67_limit_percent:g} % or high grade" if r.low_grade_mode == "ki67" else "high grade (G3)"
    ),
    "liver_burden": lambda r: (
        f"liver burden {'>' if r.liver_burden_inclusive else '≥'} {r.liver_burden_limit_percent:g} %"
    ),
    "primary_resected_portal": lambda r: "primary not portal-drained",
    "stable_disease": lambda r: f"not stable {r.stable_months} months",
    "no_extrahepatic_disease": lambda r: "extrahepatic disease",
}

#: What an undecided criterion lacks, in a word or two (the CDS card summary).
_MISSING_SHORT: dict[str, str] = {
    "age": "birth date",
    "low_grade": "Ki-67/grade",
    "liver_burden": "liver burden",
    "primary_resected_portal": "primary resection",
    "stable_disease": "disease status",
    "no_extrahepatic_disease": "staging",
}

#: Status words for people ("not met", not "not_met"); the machine values stay ``Status`` values.
STATUS_WORDS: dict[str, str] = {
    Status.MET.value: "met",
    Status.NOT_MET.value: "not met",
    Status.INDETERMINATE.value: "indeterminate",
}

#: Verdict words of the terminal table.
VERDICT_WORDS: dict[str, str] = {
    Verdict.ELIGIBLE.value: "ELIGIBLE",
    Verdict.INELIGIBLE.value: "INELIGIBLE",
    Verdict.INDETERMINATE.value: "INDETERMINATE",
}

#: Status and verdict words of the CDS card (a Markdown table cell and the summary line).
STATUS_ICONS: dict[str, str] = {
    Status.MET.value: "✅ met",
    Status.NOT_MET.value: "❌ not met",
    Status.INDETERMINATE.value: "❔ indeterminate",
}
VERDICT_SHORT: dict[str, str] = {
    Verdict.ELIGIBLE.value: "within Milan",
    Verdict.INELIGIBLE.value: "outside Milan",
    Verdict.INDETERMINATE.value: "undecided",
}

#: The displays of the verdict codes (CodeSystem milan-net; the shipped CodeSystem must say the same).
VERDICT_DISPLAY: dict[str, str] = {
    Verdict.ELIGIBLE.value: "Within the Milan criteria (all criteria met, no caution that caps)",
    Verdict.INELIGIBLE.value: "Outside the Milan criteria (a criterion not met, or an excluding caution)",
    Verdict.INDETERMINATE.value: "Milan criteria indeterminate (data missing to decide, or a caution that caps)",
}

#: Labels of the cautions (criteria.md §1c), keyed by the codes of ``_domain.CAUTION_CODES``.
CAUTION_LABELS: dict[str, str] = {
    "deceased": "Deceased",
    "prior-liver-transplant": "Prior liver transplant",
    "no-liver-metastasis-record": "No liver metastasis record",
    "other-malignancy": "Other active malignancy",
    "prior-malignancy": "Prior malignancy",
}

#: What each kind of caution does to the verdict, in words.
CAUTION_EFFECTS: dict[str, str] = {
    "excludes": "verdict ineligible",
    "caps": "verdict at most indeterminate",
    "informs": "for the team to weigh; verdict unchanged",
}


#: The prerequisite steps of the cohort flow (``_cohort._tally.CAUTION_STEPS``): long and short labels.
CAUTION_STEP_LABELS: dict[str, str] = {
    "excluding": "deceased or prior liver transplant (leave the flow)",
    "capping": "capping caution (stay in, cannot be within Milan)",
    "informational": "prior malignancy (counted, stays in)",
}
CAUTION_STEP_SHORT: dict[str, str] = {
    "excluding": "deceased / transplanted",
    "capping": "capping cautions",
    "informational": "prior malignancy",
}


def caution_effect(code: str) -> str:
    """``excludes``, ``caps`` or ``informs`` (a key of :data:`CAUTION_EFFECTS`)."""
    if code in EXCLUDING_CAUTIONS:
        return "excludes"
    if code in CAPPING_CAUTIONS:
        return "caps"
    return "informs"


def criterion_label(name: str) -> str:
    return CRITERION_LABELS.get(name, name)


def caution_label(code: str) -> str:
    return CAUTION_LABELS.get(code, code)


def criterion_phrase(name: str, rules: RuleSet) -> str:
    phrase = _PHRASES.get(name)
    return phrase(rules) if phrase is not None else criterion_label(name)


def criterion_failed_short(name: str, rules: RuleSet) -> str:
    """A not-met criterion in a few words, with the rule set's limit (``age > 60 years``)."""
    words = _FAILED_SHORT.get(name)
    return words(rules) if words is not None else name


def criterion_missing_short(name: str) -> str:
    """What an undecided criterion lacks, in a word or two (``birth date``)."""
    return _MISSING_SHORT.get(name, name)


def criterion_phrases(rules: RuleSet) -> dict[str, str]:
    """Short phrases of every criterion with the rule set's numbers, in criterion order."""
    return {name: criterion_phrase(name, rules) for name in CRITERIA}


def ordered_criteria(criteria: Iterable[str] | Mapping[str, object]) -> list[str]:
    """Criterion names in the order of ``_domain.CRITERIA``, unknown ones after, sorted."""
    names = list(criteria)
    return [n for n in CRITERIA if n in names] + sorted(n for n in names if n not in CRITERIA)


def ordered_cautions(cautions: Iterable[Caution]) -> list[Caution]:
    """Cautions in the order of ``_domain.CAUTION_CODES`` (unknown codes after, by code); stable otherwise."""
    rank = {code: i for i, code in enumerate(CAUTION_CODES)}
    items = list(cautions)
    return sorted(items, key=lambda c: (rank.get(c.code, len(rank)), c.code if c.code not in rank else ""))
