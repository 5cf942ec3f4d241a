import pytest
from builders import AS_OF, D, burden, record, rules, unusable

from milan_fhir._criteria.liver_burden import evaluate
from milan_fhir._domain import Status


def run(rule_set="milan-net", **facts):
    return evaluate(record(**facts), rules(rule_set), AS_OF)


@pytest.mark.parametrize(
    "pct, net, y2007",
    [
        (49.9, Status.MET, Status.MET),
        (50, Status.NOT_MET, Status.MET),  # milan-net strict, milan-2007 inclusive
        (50.0, Status.NOT_MET, Status.MET),
        (50.1, Status.NOT_MET, Status.NOT_MET),
        (10, Status.MET, Status.MET),
    ],
)
def test_limit_boundary(pct, net, y2007):
    f = burden(pct, ref="Observation/lb1")
    for rule_set, expected in (("milan-net", net), ("milan-2007", y2007)):
        res = run(rule_set, liver_burden=[f])
        assert res.status is expected, (rule_set, res.reason)
        assert res.evidence == (f.source,)
        assert "Observation/lb1, 2025-12-01" in res.reason


def test_most_recent_decides():
    old_high, new_low = burden(70, "2025-01-01"), burden(30, "2025-10-01")
    res = run(liver_burden=[new_low, old_high])
    assert res.status is Status.MET and res.evidence == (new_low.source,)
    old_low, new_high = burden(30, "2025-01-01"), burden(60, "2025-10-01")
    assert run(liver_burden=[old_low, new_high]).status is Status.NOT_MET


def test_after_as_of_and_undated_ignored():
    res = run(liver_burden=[burden(20, "2026-01-16")])
    assert res.status is Status.INDETERMINATE
    res = run(liver_burden=[burden(20, None, ref="Observation/nodate")])
    assert res.status is Status.INDETERMINATE and "Observation/nodate" in res.reason
    # v2 (criteria.md §1d): an undated value at or above the limit caps; an undated low one is ignored
    assert run(liver_burden=[burden(20, "2025-10-01"), burden(80, None)]).status is Status.INDETERMINATE
    assert run(liver_burden=[burden(20, "2025-10-01"), burden(10, None)]).status is Status.MET
    assert run(liver_burden=[burden(20, "2026-01-15")]).status is Status.MET  # on as_of counts


def test_bounds():
    assert run(liver_burden=[burden(25, comparator="<")]).status is Status.MET
    assert run(liver_burden=[burden(60, comparator="<")]).status is Status.INDETERMINATE
    assert run(liver_burden=[burden(50, comparator=">=")]).status is Status.NOT_MET
    assert run("milan-2007", liver_burden=[burden(50, comparator=">=")]).status is Status.INDETERMINATE
    assert run("milan-2007", liver_burden=[burden(50, comparator="<=")]).status is Status.MET
    assert run(liver_burden=[burden(50, comparator="<=")]).status is Status.INDETERMINATE


def test_same_day_worst_counts():
    res = run(liver_burden=[burden(20, "2025-10-01"), burden(55, "2025-10-01")])
    assert res.status is Status.NOT_MET


def test_none_indeterminate_reports_unusable():
    res = run(unusable=[unusable("Observation/odd", "liver_burden", "valueQuantity", "unit mL")])
    assert res.status is Status.INDETERMINATE
    assert res.missing and "liver" in res.missing[0]
    assert "Observation/odd" in res.reason


# ------------------------------------------------------------------------------------------------- v2
def test_burden_window_staleness_first():
    # as of 2026-01-15 the window starts on 2025-07-15 (inclusive)
    assert run(liver_burden=[burden(25, "2025-07-15")]).status is Status.MET
    res = run(liver_burden=[burden(25, "2025-07-14", ref="Observation/old")])
    assert res.status is Status.INDETERMINATE and "older than 6 months" in res.reason and "Observation/old" in res.reason
    # stale is decided first: an old high value no longer decides
    assert run(liver_burden=[burden(80, "2024-01-01")]).status is Status.INDETERMINATE


def test_newer_unusable_burden_caps():
    ok = burden(25, "2025-10-01")
    newer = unusable("Observation/u", "liver_burden").model_copy(update={"date": D("2025-12-01")})
    res = run(liver_burden=[ok], unusable=[newer])
    assert res.status is Status.INDETERMINATE and "Observation/u" in res.reason
    same_day = newer.model_copy(update={"date": D("2025-10-01")})
    assert run(liver_burden=[ok], unusable=[same_day]).status is Status.INDETERMINATE
    assert run(liver_burden=[burden(60, "2025-10-01")], unusable=[same_day]).status is Status.NOT_MET
    older = newer.model_copy(update={"date": D("2025-09-01")})
    assert run(liver_burden=[ok], unusable=[older]).status is Status.MET
