import pytest
from builders import AS_OF, D, grade, ki67, malignancy, primary, record, rules, unusable

from milan_fhir._criteria.low_grade import evaluate
from milan_fhir._domain import Status


def run(rule_set="milan-net", **facts):
    return evaluate(record(**facts), rules(rule_set), AS_OF)


@pytest.mark.parametrize(
    "pct, expected", [(9.9, Status.MET), (10, Status.NOT_MET), (10.0, Status.NOT_MET), (2, Status.MET), (55, Status.NOT_MET)]
)
def test_ki67_limit_boundary(pct, expected):
    k = ki67(pct, ref="Observation/k1")
    res = run(ki67=[k])
    assert res.status is expected
    assert res.evidence == (k.source,)
    assert "Observation/k1, 2025-03-01" in res.reason


def test_reason_example_wording():
    res = run(ki67=[ki67(12, ref="Observation/k1")])
    assert res.reason == "Highest Ki-67 is 12 % (Observation/k1, 2025-03-01), at or above the 10 % limit of milan-net."


def test_highest_value_counts():
    low, high = ki67(4), ki67(11, when="2024-01-01")
    res = run(ki67=[low, high])
    assert res.status is Status.NOT_MET and high.source in res.evidence
    both_low = [ki67(4), ki67(9.9)]
    res = run(ki67=both_low)
    assert res.status is Status.MET and set(res.evidence) == {k.source for k in both_low}


def test_ki67_after_as_of_ignored_undated_counts():
    assert run(ki67=[ki67(30, when="2026-01-16")]).status is Status.INDETERMINATE
    assert run(ki67=[ki67(30, when="2026-01-15")]).status is Status.NOT_MET
    assert run(ki67=[ki67(30, when=None)]).status is Status.NOT_MET
    assert run(ki67=[ki67(3, when=None)]).status is Status.MET


@pytest.mark.parametrize(
    "comparator, pct, expected",
    [
        ("<", 2, Status.MET),
        ("<", 10, Status.MET),  # below 10 for sure
        ("<=", 10, Status.INDETERMINATE),  # could be exactly 10
        ("<=", 9, Status.MET),
        (">", 20, Status.NOT_MET),
        (">=", 10, Status.NOT_MET),
        ("<", 12, Status.INDETERMINATE),
        (">", 5, Status.INDETERMINATE),
    ],
)
def test_bounds(comparator, pct, expected):
    res = run(ki67=[ki67(pct, comparator=comparator)])
    assert res.status is expected, res.reason
    if expected is Status.INDETERMINATE:
        assert res.missing and "Ki-67" in res.missing[0]
        assert f"{comparator}{pct} %" in res.reason


def test_undecided_bound_cannot_settle_but_other_value_can():
    assert run(ki67=[ki67(12, comparator="<"), ki67(15)]).status is Status.NOT_MET
    # an exact low value does not settle when a bound leaves the highest open
    assert run(ki67=[ki67(12, comparator="<"), ki67(5)]).status is Status.INDETERMINATE
    # nor does G1 alongside it
    assert run(ki67=[ki67(12, comparator="<")], grades=[grade(1)]).status is Status.INDETERMINATE


def test_grades_without_ki67():
    g1, g2, g3 = grade(1), grade(2), grade(3)
    res = run(grades=[g1])
    assert res.status is Status.MET and res.evidence == (g1.source,)
    res = run(grades=[g2])
    assert res.status is Status.INDETERMINATE and "Ki-67" in res.missing[0]
    assert run(grades=[g1, g2]).status is Status.INDETERMINATE  # highest counts
    res = run(grades=[g3])
    assert res.status is Status.NOT_MET and res.evidence == (g3.source,)
    assert run().status is Status.INDETERMINATE


def test_ki67_overrides_g2_but_not_g3():
    assert run(ki67=[ki67(5)], grades=[grade(2)]).status is Status.MET
    assert run(ki67=[ki67(5)], grades=[grade(3)]).status is Status.NOT_MET


def test_carcinoma_morphology_with_low_ki67():
    nec = grade(3, kind="morphology", label="neuroendocrine carcinoma (ICD-O-3 8246/3)", ref="Condition/c1")
    # v2 (criteria.md §1a): a grade carried by a Condition counts only when that Condition is part of the NET
    assert run(ki67=[ki67(2)], grades=[nec]).status is Status.MET
    res = run(ki67=[ki67(2)], grades=[nec], primaries=[primary(ref="Condition/c1")])
    assert res.status is Status.NOT_MET
    assert "neuroendocrine carcinoma" in res.reason and "Condition/c1" in res.reason
    assert nec.source in res.evidence


def test_high_grade_evidence_after_as_of_ignored():
    assert run(ki67=[ki67(2)], grades=[grade(3, when="2026-02-01")]).status is Status.MET


def test_unusable_reported_when_indeterminate():
    res = run(unusable=[unusable("Observation/bad", "ki67")])
    assert res.status is Status.INDETERMINATE
    assert "Observation/bad" in res.reason


def test_nan_value_not_counted_as_low():
    res = run(ki67=[ki67(float("nan"), ref="Observation/nan")])
    assert res.status is Status.INDETERMINATE
    assert "Observation/nan" in res.reason


# --- milan-2007: grade mode, WHO 2019 cut-offs (below 3 G1, 3-20 G2, above 20 G3), no 10 % limit ---------


@pytest.mark.parametrize(
    "pct, expected",
    [(2.9, Status.MET), (3, Status.MET), (15, Status.MET), (20, Status.MET), (20.1, Status.NOT_MET), (25, Status.NOT_MET)],
)
def test_milan_2007_ki67_to_grade(pct, expected):
    res = run("milan-2007", ki67=[ki67(pct)])
    assert res.status is expected, res.reason


def test_milan_2007_differs_from_milan_net_at_15_percent():
    assert run(ki67=[ki67(15)]).status is Status.NOT_MET
    res = run("milan-2007", ki67=[ki67(15)])
    assert res.status is Status.MET and "G2" in res.reason


def test_milan_2007_grades():
    assert run("milan-2007", grades=[grade(2)]).status is Status.MET
    assert run("milan-2007", grades=[grade(1)]).status is Status.MET
    assert run("milan-2007", grades=[grade(3)]).status is Status.NOT_MET
    assert run("milan-2007").status is Status.INDETERMINATE
    assert run("milan-2007", ki67=[ki67(5, comparator=">")]).status is Status.INDETERMINATE
    assert run("milan-2007", ki67=[ki67(12, comparator="<")]).status is Status.MET
    assert run("milan-2007", ki67=[ki67(20, comparator=">")]).status is Status.NOT_MET


def test_milan_2007_reason_names_derived_grade():
    assert "grade G1" in run("milan-2007", ki67=[ki67(2, comparator="<")]).reason
    assert "grade G1" in run("milan-2007", ki67=[ki67(2.9)]).reason
    assert "grade G2" in run("milan-2007", ki67=[ki67(3)]).reason
    assert "G1 or G2" in run("milan-2007", ki67=[ki67(12, comparator="<")]).reason


# ------------------------------------------------------------------------------------------------- v2
def _linked(fact, *refs):
    return fact.model_copy(update={"links": refs})


def test_unusable_ki67_caps_but_high_evidence_still_decides():
    bad = unusable("Observation/u", "ki67", reason="Ki-67 value: text '8-15%' is not a percentage")
    res = run(ki67=[ki67(3, ref="Observation/old")], unusable=[bad])
    assert res.status is Status.INDETERMINATE and "Observation/u" in res.reason and "8-15%" in res.reason
    assert run(ki67=[ki67(3)]).status is Status.MET
    assert run(ki67=[ki67(3), ki67(12)], unusable=[bad]).status is Status.NOT_MET
    g3 = grade(3, ref="Observation/g3")
    assert run(grades=[g3], unusable=[bad]).status is Status.NOT_MET


def test_unusable_grade_caps_g1():
    bad = unusable("Observation/gx", "histologic_grade", field="valueString", reason="grade value GX")
    assert run(grades=[grade(1)]).status is Status.MET
    assert run(grades=[grade(1)], unusable=[bad]).status is Status.INDETERMINATE


def test_ki67_linked_to_another_tumour_does_not_count():
    breast = malignancy(ref="Condition/breast")
    net = primary(ref="Condition/net")
    high = _linked(ki67(25, ref="Observation/k-breast"), "Condition/breast")
    low = _linked(ki67(4, ref="Observation/k-net"), "Condition/net")
    res = run(ki67=[high, low], primaries=[net], malignancies=[breast])
    assert res.status is Status.MET and "Observation/k-net" in res.reason
    # the other direction: another tumour's high Ki-67 never makes the NET's not_met
    assert run(ki67=[high], primaries=[net], malignancies=[breast]).status is Status.INDETERMINATE


def test_unlinked_ki67_beside_active_other_malignancy_is_ambiguous():
    net = primary(ref="Condition/net")
    breast = malignancy(ref="Condition/breast")
    for value in (4, 25):
        res = run(ki67=[ki67(value, ref="Observation/k")], primaries=[net], malignancies=[breast])
        assert res.status is Status.INDETERMINATE, value
        assert "Observation/k" in res.reason and "Condition/breast" in res.reason
        assert "Observation.focus linking the value to the NET, or a NET-specific value" in res.missing
    # a resolved other malignancy recorded before the NET: an unlinked value near the NET's time counts
    old = malignancy(ref="Condition/breast", active=False, when="2010-01-01")
    assert run(ki67=[ki67(4, when="2020-03-01")], primaries=[net], malignancies=[old]).status is Status.MET
    # ... but a value dated more than 6 months before the NET's earliest record is ambiguous
    assert run(ki67=[ki67(4, when="2019-01-01")], primaries=[net], malignancies=[old]).status is Status.INDETERMINATE
    assert run(ki67=[ki67(4, when=None)], primaries=[net], malignancies=[old]).status is Status.INDETERMINATE


def test_link_to_a_condition_not_in_the_data_is_no_link():
    net = primary(ref="Condition/net")
    k = _linked(ki67(4), "Condition/not-there")
    assert run(ki67=[k], primaries=[net]).status is Status.MET


def test_breast_specimen_ki67_counts_only_when_linked():
    net = primary(ref="Condition/net")
    k = ki67(4).model_copy(update={"requires_link": True})
    assert run(ki67=[k], primaries=[net]).status is Status.INDETERMINATE
    assert run(ki67=[_linked(k, "Condition/net")], primaries=[net]).status is Status.MET


def test_low_grade_text_is_g1_or_g2():
    low = grade(2, label="low grade (G1 or G2)")
    assert run(grades=[low]).status is Status.INDETERMINATE
    assert run("milan-2007", grades=[low]).status is Status.MET


def test_8249_open_reading_under_milan_2007():
    nec_like = grade(2, kind="morphology", ref="Condition/c1", label="8249/3").model_copy(update={"at_least": True})
    net = primary(ref="Condition/c1")
    assert run("milan-2007", grades=[nec_like], primaries=[net]).status is Status.INDETERMINATE
    assert run("milan-2007", grades=[nec_like, grade(2)], primaries=[net]).status is Status.MET
    assert run("milan-2007", grades=[nec_like], primaries=[net], ki67=[ki67(5)]).status is Status.MET
    assert run("milan-2007", grades=[nec_like], primaries=[net], ki67=[ki67(2)]).status is Status.INDETERMINATE
    assert run("milan-2007", grades=[nec_like], primaries=[net], ki67=[ki67(25)]).status is Status.NOT_MET
    # milan-net reads it as G2: a Ki-67 is needed, and decides
    assert run(grades=[nec_like], primaries=[net]).status is Status.INDETERMINATE
    assert run(grades=[nec_like], primaries=[net], ki67=[ki67(5)]).status is Status.MET


def test_grade_of_other_malignancy_condition_is_not_net_evidence():
    net = primary(ref="Condition/net")
    sclc = grade(3, kind="morphology", ref="Condition/sclc", label="small cell carcinoma")
    lung = malignancy(ref="Condition/sclc", active=False, when="2008-01-01", has_morphology=True,
                      label="small cell carcinoma of lung")
    assert run(grades=[sclc, grade(1)], primaries=[net], malignancies=[lung]).status is Status.MET
