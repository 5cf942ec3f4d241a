from datetime import date

from builders import AS_OF, D, metastasis, record, resection, rules, staging, unusable

from milan_fhir._criteria.no_extrahepatic_disease import evaluate
from milan_fhir._domain import Status


def run(as_of=AS_OF, rule_set="milan-net", **facts):
    return evaluate(record(**facts), rules(rule_set), as_of)


def test_recent_absent_met():
    s = staging(False, "2025-12-01", ref="Observation/st")
    res = run(staging=[s])
    assert res.status is Status.MET and res.evidence == (s.source,)
    assert "Observation/st, 2025-12-01" in res.reason


def test_window_inclusive():
    # as_of 2026-01-15 minus 6 months = 2025-07-15
    assert run(staging=[staging(False, "2025-07-15")]).status is Status.MET
    res = run(staging=[staging(False, "2025-07-14")])
    assert res.status is Status.INDETERMINATE
    assert "no recent staging evidence" in res.reason.lower() and res.missing


def test_present_not_met_at_any_age():
    p = staging(True, "2020-01-01")
    res = run(staging=[p])
    assert res.status is Status.NOT_MET and res.evidence == (p.source,)


def test_most_recent_staging_decides():
    assert run(staging=[staging(True, "2025-01-01"), staging(False, "2025-12-01")]).status is Status.MET
    assert run(staging=[staging(False, "2025-01-01"), staging(True, "2025-12-01")]).status is Status.NOT_MET
    # same day: present wins
    assert run(staging=[staging(False, "2025-12-01"), staging(True, "2025-12-01")]).status is Status.NOT_MET


def test_staging_after_as_of_and_undated_ignored():
    assert run(staging=[staging(True, "2026-01-16")]).status is Status.INDETERMINATE
    assert run(staging=[staging(True, None)]).status is Status.INDETERMINATE
    assert run(staging=[staging(False, "2026-01-15")]).status is Status.MET


def test_active_extrahepatic_metastasis_not_met():
    m = metastasis("extrahepatic", "2025-01-01", ref="Condition/bone")
    res = run(metastases=[m], staging=[staging(False, "2025-12-01")])
    assert res.status is Status.NOT_MET and m.source in res.evidence
    assert "Condition/bone" in res.reason and "bone" in res.reason


def test_metastasis_filters():
    absent = [staging(False, "2025-12-01")]
    assert run(metastases=[metastasis(active=False)], staging=absent).status is Status.MET
    assert run(metastases=[metastasis(location="liver", site="liver")], staging=absent).status is Status.MET
    # v2 (criteria.md §1b): an active metastasis whose site cannot be mapped caps the criterion (v1: met)
    assert run(metastases=[metastasis(location="unspecified", site=None)], staging=absent).status is Status.INDETERMINATE
    assert run(metastases=[metastasis(location="unspecified", site=None, active=False)], staging=absent).status \
        is Status.MET
    assert run(metastases=[metastasis(when="2026-02-01")], staging=absent).status is Status.MET
    assert run(metastases=[metastasis(when=None)], staging=absent).status is Status.NOT_MET
    assert run(metastases=[metastasis()]).status is Status.NOT_MET


def test_nothing_recorded_indeterminate_reports_unusable():
    res = run(unusable=[unusable("Observation/u", "extrahepatic_staging", "valueString", "not a presence value")])
    assert res.status is Status.INDETERMINATE
    assert "Observation/u" in res.reason


def test_window_clamps_month_end():
    # 2024-08-31 minus 6 months = 2024-02-29
    as_of = date(2024, 8, 31)
    assert run(as_of, staging=[staging(False, "2024-02-29")]).status is Status.MET
    assert run(as_of, staging=[staging(False, "2024-02-28")]).status is Status.INDETERMINATE


# ------------------------------------------------------------------------------------------------- v2
def test_suspected_extrahepatic_metastasis_caps_confirmed_decides():
    absent = [staging(False, "2025-12-01")]
    sus = metastasis(ref="Condition/s1").model_copy(update={"suspected": True, "verification": "differential"})
    res = run(metastases=[sus], staging=absent)
    assert res.status is Status.INDETERMINATE
    assert "Condition/s1" in res.reason and "differential" in res.reason and "confirm or refute" in res.reason
    assert run(metastases=[metastasis()], staging=absent).status is Status.NOT_MET


def test_nodal_review_caps_and_names_the_resection():
    absent = [staging(False, "2025-12-01")]
    node = metastasis(location="review", site="intra_abdominal_nodes", label="intra-abdominal lymph nodes",
                      ref="Condition/n1")
    res = run(metastases=[node], staging=absent)
    assert res.status is Status.INDETERMINATE and "review" in res.reason and "Condition/n1" in res.reason
    named = resection(ref="Procedure/r1", reason=("Condition/n1",), when="2020-02-01")
    res = run(metastases=[node], staging=absent, procedures=[named])
    assert res.status is Status.INDETERMINATE
    assert "named by the resection of 2020-02-01 (Procedure/r1)" in res.reason
    resolved = node.model_copy(update={"active": False})
    assert run(metastases=[resolved], staging=absent).status is Status.MET


def test_abatement_after_as_of_means_active_then():
    absent = [staging(False, "2025-12-01")]
    gone_later = metastasis().model_copy(update={"active": False, "abatement": D("2026-06-01")})
    gone_before = metastasis().model_copy(update={"active": False, "abatement": D("2025-06-01")})
    assert run(metastases=[gone_later], staging=absent).status is Status.NOT_MET
    assert run(metastases=[gone_before], staging=absent).status is Status.MET


def test_undated_present_caps_undated_absent_is_ignored():
    absent = staging(False, "2025-12-01")
    assert run(staging=[absent, staging(True, None)]).status is Status.INDETERMINATE
    assert run(staging=[absent, staging(False, None)]).status is Status.MET


def test_unusable_staging_newer_than_present_no_longer_decides():
    old_present = staging(True, "2025-06-01")
    newer_bad = unusable("Observation/u", "extrahepatic_staging").model_copy(update={"date": D("2025-12-01")})
    assert run(staging=[old_present]).status is Status.NOT_MET
    res = run(staging=[old_present], unusable=[newer_bad])
    assert res.status is Status.INDETERMINATE and "Observation/u" in res.reason
    same_day_bad = newer_bad.model_copy(update={"date": D("2025-06-01")})
    assert run(staging=[old_present], unusable=[same_day_bad]).status is Status.NOT_MET
    older_bad = newer_bad.model_copy(update={"date": D("2025-01-01")})
    assert run(staging=[staging(False, "2025-12-01")], unusable=[older_bad]).status is Status.MET
