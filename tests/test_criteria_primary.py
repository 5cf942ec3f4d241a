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


# ------------------------------------------------------------------------------------------------- v2
def _run(**facts):
    from builders import AS_OF, record, rules

    return evaluate(record(**facts), rules(), AS_OF)


def test_site_tree_matching_of_resections():
    from builders import primary, resection

    ileal = primary("ileum", ref="Condition/p")
    jejunal = primary("jejunum", ref="Condition/p")
    duodenal = primary("duodenum", ref="Condition/p")
    sin = primary("small_intestine", ref="Condition/p")
    enterectomy = resection(code=("jejunum", "ileum"))
    hemi = resection(code=("terminal_ileum", "cecum", "ascending_colon", "appendix"))
    whipple = resection(code=("pancreas_head", "duodenum", "distal_stomach"))
    assert _run(primaries=[ileal], procedures=[enterectomy]).status is Status.MET
    assert _run(primaries=[sin], procedures=[enterectomy]).status is Status.MET
    assert _run(primaries=[duodenal], procedures=[enterectomy]).status is Status.INDETERMINATE
    assert _run(primaries=[ileal], procedures=[hemi]).status is Status.MET
    assert _run(primaries=[jejunal], procedures=[hemi]).status is Status.INDETERMINATE
    assert _run(primaries=[ileal], procedures=[whipple]).status is Status.INDETERMINATE
    assert _run(primaries=[duodenal], procedures=[whipple]).status is Status.MET
    # a mapped bodySite decides the Procedure's site, not its code
    whipple_on_stomach = resection(code=("pancreas_head", "duodenum", "distal_stomach"), body=("pancreas",))
    assert _run(primaries=[primary("stomach", ref="Condition/p")], procedures=[whipple_on_stomach]).status \
        is Status.INDETERMINATE


def test_reason_reference_and_reason_code():
    from builders import primary, resection

    p = primary("ileum", ref="Condition/p")
    for_other = resection(code=("jejunum", "ileum"), reason=("Condition/diverticulitis",))
    res = _run(primaries=[p], procedures=[for_other])
    assert res.status is Status.INDETERMINATE and "Condition/diverticulitis" in res.reason
    unresolved = resection(code=("jejunum", "ileum"), reason=("unresolved:urn:uuid:gone",))
    assert _run(primaries=[p], procedures=[unresolved]).status is Status.INDETERMINATE
    coded = resection(code=("jejunum", "ileum"), reason_codes=("icd-10-cm K57.32",))
    res = _run(primaries=[p], procedures=[coded])
    assert res.status is Status.INDETERMINATE and "K57.32" in res.reason
    # named for the primary: counts whatever its code's sites
    named = resection(code=("colon",), reason=("Condition/p",))
    assert _run(primaries=[p], procedures=[named]).status is Status.MET
    # linked to another primary NET Condition of a matching site: may count for this one
    p2 = primary("small_intestine", ref="Condition/p2")
    to_other_net = resection(code=("jejunum", "ileum"), reason=("Condition/p2",))
    assert _run(primaries=[p, p2], procedures=[to_other_net]).status is Status.MET


def test_resection_lead_months():
    from builders import primary, resection

    p = primary("ileum", ref="Condition/p", when="2020-07-01")
    assert _run(primaries=[p], procedures=[resection("2020-01-01", code=("ileum",))]).status is Status.MET
    old = resection("1990-05-01", code=("ileum",))
    res = _run(primaries=[p], procedures=[old])
    assert res.status is Status.INDETERMINATE and "30 years before the NET was recorded" in res.reason
    assert _run(primaries=[p], procedures=[resection("1990-05-01", reason=("Condition/p",))]).status is Status.MET
    undated = primary("ileum", ref="Condition/p", when=None)
    assert _run(primaries=[undated], procedures=[old]).status is Status.MET


def test_suspected_primary_adds_indeterminate_only_where_not_met():
    from builders import primary, resection

    p = primary("ileum", ref="Condition/p")
    done = resection(reason=("Condition/p",))
    sus_lung = primary("lung", ref="Condition/s").model_copy(update={"suspected": True, "verification": "provisional"})
    res = _run(primaries=[p, sus_lung], procedures=[done])
    assert res.status is Status.INDETERMINATE and "Condition/s" in res.reason and "confirm or refute" in res.reason
    sus_ileal = primary("ileum", ref="Condition/s").model_copy(update={"suspected": True, "verification": "provisional"})
    assert _run(primaries=[p, sus_ileal], procedures=[done, resection(reason=("Condition/s",))]).status is Status.MET
    # a suspected primary alone is never met
    assert _run(primaries=[sus_ileal], procedures=[resection(reason=("Condition/s",))]).status is Status.INDETERMINATE


def test_primary_in_the_liver_is_review_with_the_hepatic_reason():
    from builders import primary

    res = _run(primaries=[primary("liver", ref="Condition/p")])
    assert res.status is Status.INDETERMINATE and "primary hepatic NET is rare" in res.reason
