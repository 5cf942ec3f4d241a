from datetime import date

from builders import AS_OF, record, rules, status, unusable

from milan_fhir._criteria.stable_disease import evaluate
from milan_fhir._domain import Status


def run(items, as_of=AS_OF, rule_set="milan-net", **facts):
    return evaluate(record(disease_status=items, **facts), rules(rule_set), as_of)


def test_no_assessments():
    res = run([])
    assert res.status is Status.INDETERMINATE and res.missing and "97509-4" in res.missing[0]


def test_undated_and_future_ignored():
    res = run([status("stable", None, ref="Observation/nd"), status("stable", "2026-02-01")])
    assert res.status is Status.INDETERMINATE
    assert "Observation/nd" in res.reason


def test_stale_latest():
    # as_of 2026-01-15 minus 6 months = 2025-07-15
    items = [status("stable", "2024-01-01"), status("stable", "2025-07-14")]
    res = run(items)
    assert res.status is Status.INDETERMINATE and "more than 6 months" in res.reason


def test_exactly_six_months_old_is_not_stale():
    items = [status("stable", "2024-01-01"), status("stable", "2025-07-15")]
    assert run(items).status is Status.MET


def test_stale_worsened_is_indeterminate():
    res = run([status("stable", "2024-01-01"), status("worsened", "2025-07-14")])
    assert res.status is Status.INDETERMINATE


def test_latest_worsened_not_met():
    w = status("worsened", "2025-12-01", ref="Observation/w")
    res = run([status("stable", "2024-01-01"), w])
    assert res.status is Status.NOT_MET and res.evidence == (w.source,)
    assert "Observation/w, 2025-12-01" in res.reason


def test_stable_six_months_met():
    s, e = status("stable", "2025-06-01"), status("improved", "2025-12-01")
    res = run([e, s])
    assert res.status is Status.MET
    assert set(res.evidence) == {s.source, e.source}


def test_stable_shorter_than_six_months_indeterminate():
    res = run([status("stable", "2025-06-02"), status("stable", "2025-12-01")])
    assert res.status is Status.INDETERMINATE
    assert "shorter than the 6 months" in res.reason
    assert "2025-12-02" in res.missing[0]


def test_clamped_month_arithmetic_example():
    # 2024-08-31 minus 6 months = 2024-02-29: S on 2024-02-29 qualifies, 2024-03-01 does not
    as_of = date(2024, 9, 1)
    assert run([status("stable", "2024-02-29"), status("stable", "2024-08-31")], as_of).status is Status.MET
    res = run([status("stable", "2024-03-01"), status("stable", "2024-08-31")], as_of)
    assert res.status is Status.INDETERMINATE
    # the earliest follow-up that would settle it: 2024-09-01 (2024-09-01 minus 6 months = 2024-03-01)
    assert "2024-09-01" in res.missing[0]


def test_progression_then_short_stability_not_met():
    w = status("worsened", "2025-08-01", ref="Observation/w")
    s = status("stable", "2025-09-01", ref="Observation/s")
    e = status("stable", "2025-12-01", ref="Observation/e")
    res = run([status("stable", "2024-01-01"), w, s, e])
    assert res.status is Status.NOT_MET
    assert "Progression on 2025-08-01" in res.reason and "stable only 3 months" in res.reason
    assert set(res.evidence) == {w.source, s.source, e.source}


def test_progression_then_long_stability_met():
    items = [status("worsened", "2025-01-01"), status("stable", "2025-02-01"), status("stable", "2025-08-01"),
             status("improved", "2025-12-01")]
    res = run(items)
    assert res.status is Status.MET  # S = 2025-02-01, latest 2025-12-01


def test_s_is_first_after_last_worsened():
    # the early stable assessment before the progression does not count towards stability
    items = [status("stable", "2023-01-01"), status("worsened", "2025-03-01"), status("stable", "2025-06-02"),
             status("stable", "2025-12-01")]
    res = run(items)
    assert res.status is Status.NOT_MET
    assert "stable only 5 months" in res.reason


def test_s_exactly_six_months_before_latest_met():
    items = [status("worsened", "2025-03-01"), status("stable", "2025-06-01"), status("stable", "2025-12-01")]
    assert run(items).status is Status.MET


def test_same_day_worsened_taken_as_later():
    items = [status("stable", "2024-01-01"), status("stable", "2025-12-01"), status("worsened", "2025-12-01")]
    assert run(items).status is Status.NOT_MET
    items = [status("stable", "2024-01-01"), status("worsened", "2025-06-01"), status("stable", "2025-06-01"),
             status("stable", "2025-12-01")]
    # the same-day stable is before the worsened: S is 2025-12-01, stable 0 months
    res = run(items)
    assert res.status is Status.NOT_MET and "stable only 0 months" in res.reason


def test_unusable_reported():
    res = run([], unusable=[unusable("Observation/u", "disease_status", "valueCodeableConcept", "unknown code")])
    assert "Observation/u" in res.reason
