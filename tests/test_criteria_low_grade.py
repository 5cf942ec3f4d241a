import pytest
from builders import AS_OF, grade, ki67, record, rules, unusable

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
    res = run(ki67=[ki67(2)], grades=[nec])
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
