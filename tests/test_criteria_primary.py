import pytest
from builders import AS_OF, primary, record, resection, rules

from milan_fhir._criteria.primary_resected_portal import evaluate
from milan_fhir._domain import Status


def run(**facts):
    return evaluate(record(**facts), rules(), AS_OF)


def test_no_primary():
    res = run()
    assert res.status is Status.INDETERMINATE and res.missing and not res.evidence


def test_systemic_primary_not_met():
    p = primary("lung", ref="Condition/lung")
    res = run(primaries=[p], procedures=[resection(reason=("Condition/lung",))])
    assert res.status is Status.NOT_MET and res.evidence == (p.source,)
    assert "systemic" in res.reason and "Condition/lung" in res.reason


def test_unknown_primary_not_met():
    p = primary("unknown_primary")
    res = run(primaries=[p])
    assert res.status is Status.NOT_MET and res.evidence == (p.source,)
    assert "unknown" in res.reason


@pytest.mark.parametrize("site, words", [("rectum", "upper rectum"), ("unreadable", "does not name its site")])
def test_review_site_names_site_and_why(site, words):
    p = primary(site)
    res = run(primaries=[p], procedures=[resection(reason=(p.source.reference,))])
    assert res.status is Status.INDETERMINATE
    assert words in res.reason and p.site_label in res.reason
    assert res.missing


def test_portal_without_resection():
    p = primary("ileum")
    res = run(primaries=[p])
    assert res.status is Status.INDETERMINATE
    assert "no record of resection of the primary" in res.reason


def test_resection_by_reason_reference():
    p = primary("midgut", ref="Condition/mid")  # no anatomical group: only the reference can match
    proc = resection(reason=("Condition/mid",), ref="Procedure/r1")
    res = run(primaries=[p], procedures=[proc])
    assert res.status is Status.MET
    assert set(res.evidence) == {p.source, proc.source}
    assert "Procedure/r1" in res.reason
    # a resection for another Condition does not count
    assert run(primaries=[p], procedures=[resection(reason=("Condition/other",))]).status is Status.INDETERMINATE


def test_resection_by_body_site_group():
    p = primary("ileum")
    assert run(primaries=[p], procedures=[resection(body=("small_intestine",))]).status is Status.MET
    assert run(primaries=[p], procedures=[resection(body=("colon",))]).status is Status.INDETERMINATE


def test_resection_by_code_group():
    p = primary("pancreas")
    assert run(primaries=[p], procedures=[resection(code=("pancreas",))]).status is Status.MET
    assert run(primaries=[p], procedures=[resection(code=("stomach",))]).status is Status.INDETERMINATE


@pytest.mark.parametrize("site, group", [("appendix", "appendix"), ("cecum", "colon"), ("stomach", "stomach")])
def test_portal_sites_by_group(site, group):
    assert run(primaries=[primary(site)], procedures=[resection(code=(group,))]).status is Status.MET


def test_only_primary_resections_count():
    p = primary("ileum")
    proc = resection(body=("small_intestine",), kind="liver_resection_minor")
    assert run(primaries=[p], procedures=[proc]).status is Status.INDETERMINATE


def test_resection_after_as_of_ignored_and_undated_counts():
    p = primary("ileum")
    assert run(primaries=[p], procedures=[resection("2026-01-16", code=("small_intestine",))]).status is Status.INDETERMINATE
    assert run(primaries=[p], procedures=[resection("2026-01-15", code=("small_intestine",))]).status is Status.MET
    assert run(primaries=[p], procedures=[resection(None, code=("small_intestine",))]).status is Status.MET


def test_primary_after_as_of_ignored():
    assert run(primaries=[primary("lung", when="2026-03-01")]).status is Status.INDETERMINATE
    assert run(primaries=[primary("lung", when=None)]).status is Status.NOT_MET


def test_unknown_ignored_when_known_exists():
    unknown, ileum = primary("unknown_primary"), primary("ileum")
    res = run(primaries=[unknown, ileum], procedures=[resection(code=("small_intestine",))])
    assert res.status is Status.MET
    assert unknown.source not in res.evidence
    assert unknown.source.reference in res.reason  # said to be ignored


def test_several_primaries_worst_wins():
    ileum, rectum, lung = primary("ileum"), primary("rectum"), primary("lung")
    cut = resection(code=("small_intestine",))
    res = run(primaries=[ileum, rectum], procedures=[cut])
    assert res.status is Status.INDETERMINATE and res.evidence == (rectum.source,)
    res = run(primaries=[ileum, rectum, lung], procedures=[cut])
    assert res.status is Status.NOT_MET and res.evidence == (lung.source,)
    both = run(primaries=[ileum, primary("pancreas")], procedures=[cut])
    assert both.status is Status.INDETERMINATE  # the pancreas primary has no resection
    both = run(primaries=[ileum, primary("pancreas")], procedures=[cut, resection(code=("pancreas",))])
    assert both.status is Status.MET and len(both.evidence) == 4


def test_inactive_primary_still_counts():
    p = primary("ileum", active=False)
    assert run(primaries=[p], procedures=[resection(code=("small_intestine",))]).status is Status.MET


def test_unverified_code_flagged():
    p = primary("pancreas")
    proc = resection(code=("pancreas",), ref="Procedure/whipple", unverified=("CPT 48150",))
    res = run(primaries=[p], procedures=[proc])
    assert res.status is Status.MET
    assert "CPT 48150" in res.reason and "unverified" in res.reason
