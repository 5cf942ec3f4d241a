"""Properties of spec v2 at the level of domain facts (thousands of cases in seconds).

1. Adding any single adverse fact the spec names to an ``eligible`` patient never leaves it ``eligible``.
2. Removing a link to the NET (``focus`` / related-condition) from a finding never turns an ``indeterminate``
   criterion into ``met`` (an unlinked finding is at best as good as a linked one, criteria.md §1a).
3. A finding linked to another tumour never makes a criterion ``not_met``.
"""

from __future__ import annotations

from builders import (
    AS_OF,
    D,
    burden,
    grade,
    ki67,
    malignancy,
    metastasis,
    patient,
    primary,
    record,
    resection,
    rules,
    staging,
    status,
    unusable,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._criteria import CRITERION_FUNCTIONS
from milan_fhir._domain import PatientFact, ProcedureFact, Source, Status, TransplantStatusFact, Verdict
from milan_fhir._evaluate import evaluate_record

NET = "Condition/prim"
OTHER = "Condition/breast"


def eligible_facts():
    return dict(
        demographics=patient("1970-05-01"),
        ki67=[ki67(4, ref="Observation/k")],
        liver_burden=[burden(30, "2025-12-01")],
        primaries=[primary("ileum", ref=NET)],
        metastases=[metastasis("liver", ref="Condition/nelm", site="liver", label="liver")],
        procedures=[resection(reason=(NET,))],
        disease_status=[status("stable", "2025-03-01"), status("stable", "2025-12-01")],
        staging=[staging(False, "2025-12-01")],
    )


def test_base_is_eligible():
    for name in ("milan-net", "milan-2007"):
        ev = evaluate_record(record(**eligible_facts()), rules(name), AS_OF, "v")
        assert ev.verdict is Verdict.ELIGIBLE, {n: r.reason for n, r in ev.criteria.items()}


_recent = st.dates(min_value=D("2025-08-01"), max_value=AS_OF).map(lambda d: d.isoformat())
_any_date = st.one_of(st.none(), st.dates(min_value=D("2000-01-01"), max_value=AS_OF).map(lambda d: d.isoformat()))
_newest = st.dates(min_value=D("2025-12-02"), max_value=AS_OF).map(lambda d: d.isoformat())


def _with(u, when):
    return u.model_copy(update={"date": D(when)})


def _adverse():
    """(field, fact strategy, replace?) for each adverse fact the spec names."""
    ext_sites = st.sampled_from(["bone", "lung", "peritoneum", "brain", "spleen", "adrenal"])
    return st.one_of(
        # an extrahepatic metastasis, confirmed or suspected, at any date up to as_of, or undated
        st.builds(lambda when, s, sus: ("metastases", metastasis(when=when, site=s, label=s).model_copy(
            update={"suspected": sus, "verification": "differential" if sus else None}), False),
            _any_date, ext_sites, st.booleans()),
        # a metastasis of unknown site, or nodal review
        st.builds(lambda when, loc: ("metastases", metastasis(loc, when=when, site=None, label="?"), False),
                  _any_date, st.sampled_from(["unspecified", "review"])),
        # an unusable Ki-67 or grade (caps low_grade)
        st.builds(lambda when, c: ("unusable", _with(unusable("Observation/u", c), when) if when
                                   else unusable("Observation/u", c), False),
                  _any_date, st.sampled_from(["ki67", "histologic_grade"])),
        # a newer unusable burden / staging / disease status
        st.builds(lambda when, c: ("unusable", _with(unusable("Observation/u2", c), when), False),
                  _newest, st.sampled_from(["liver_burden", "extrahepatic_staging", "disease_status"])),
        # NET Ki-67 at or above the limit, high-grade evidence
        st.builds(lambda v, when: ("ki67", ki67(v, when=when), False), st.floats(10, 100), _any_date),
        st.builds(lambda when: ("grades", grade(3, when=when), False), _any_date),
        # a newer burden at or above the limit; a stale burden (replacing the recent one)
        st.builds(lambda v, when: ("liver_burden", burden(v, when), False), st.floats(50.5, 100), _newest),
        st.builds(lambda when: ("liver_burden", burden(30, when), True),
                  st.dates(min_value=D("2020-01-01"), max_value=D("2025-07-14")).map(lambda d: d.isoformat())),
        # latest disease status worsened or undetermined; latest staging present
        st.builds(lambda t, when: ("disease_status", status(t, when), False),
                  st.sampled_from(["worsened", "undetermined"]), _newest),
        st.builds(lambda when: ("staging", staging(True, when), False), st.one_of(st.none(), _newest)),
        # deceased, liver transplant (procedure or status), other malignancy (active)
        st.just(("demographics", PatientFact(birth_date=patient("1970-05-01").birth_date, deceased=True,
                                             source=Source(reference="Patient/p1")), True)),
        st.builds(lambda when: ("demographics", PatientFact(birth_date=patient("1970-05-01").birth_date,
                                                            deceased_date=D(when),
                                                            source=Source(reference="Patient/p1")), True), _recent),
        st.builds(lambda when: ("procedures", ProcedureFact(kind="liver_transplant", source=Source(
            reference="Procedure/lt", date=D(when))), False), _any_date),
        st.builds(lambda when: ("transplant_status", TransplantStatusFact(label="Z94.4", source=Source(
            reference="Condition/z944", date=D(when))), False), _any_date),
        st.builds(lambda when, kind, sus: ("malignancies", malignancy(kind, when=when, ref=OTHER, suspected=sus),
                                           False),
                  _any_date, st.sampled_from(["code", "generic", "site_code", "text", "morphology"]), st.booleans()),
        # no liver metastasis record: the liver metastasis removed and the burden 0 %
        st.just(("metastases", None, True)),
    )


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adverse=_adverse(), rule_set=st.sampled_from(["milan-net", "milan-2007"]))
def test_adding_any_adverse_fact_never_leaves_eligible(adverse, rule_set):
    field, fact, replace = adverse
    facts = eligible_facts()
    if field == "metastases" and fact is None:
        facts["metastases"] = []
        facts["liver_burden"] = [burden(0, "2025-12-01")]
    elif field == "demographics":
        facts["demographics"] = fact
    elif replace:
        facts[field] = [fact]
    else:
        facts[field] = list(facts.get(field, [])) + [fact]
    rs = rules(rule_set)
    if field == "ki67" and rule_set == "milan-2007" and fact.percent <= 20:
        return  # milan-2007 accepts a Ki-67 up to 20 % (G2): not adverse there
    ev = evaluate_record(record(**facts), rs, AS_OF, "v")
    assert ev.verdict is not Verdict.ELIGIBLE, (adverse, {n: r.reason for n, r in ev.criteria.items()})


_targets = st.sampled_from([(NET,), (OTHER,), (), ("Condition/missing",), (NET, OTHER)])
_finding_dates = st.one_of(st.none(), st.dates(min_value=D("2018-01-01"), max_value=AS_OF).map(lambda d: d.isoformat()))


@st.composite
def _linked_records(draw):
    facts = eligible_facts()
    facts["ki67"] = [ki67(draw(st.sampled_from([2, 4, 9, 12, 25])), when=draw(_finding_dates), ref=f"Observation/k{i}")
                     .model_copy(update={"links": draw(_targets)}) for i in range(draw(st.integers(0, 3)))]
    facts["grades"] = [grade(draw(st.sampled_from([1, 2, 3])), when=draw(_finding_dates), ref=f"Observation/g{i}")
                       .model_copy(update={"links": draw(_targets)}) for i in range(draw(st.integers(0, 2)))]
    facts["disease_status"] = [
        status(draw(st.sampled_from(["stable", "improved", "worsened", "undetermined"])),
               draw(st.dates(min_value=D("2024-06-01"), max_value=AS_OF)).isoformat(), ref=f"Observation/s{i}")
        .model_copy(update={"links": draw(_targets)}) for i in range(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        facts["malignancies"] = [malignancy(when=draw(_finding_dates), ref=OTHER, active=draw(st.booleans()))]
    return record(**facts)


def _statuses(rec, rs):
    return {name: fn(rec, rs, AS_OF).status for name, fn in CRITERION_FUNCTIONS.items()}


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=_linked_records(), rule_set=st.sampled_from(["milan-net", "milan-2007"]), data=st.data())
def test_removing_a_link_to_the_net_never_turns_indeterminate_into_met(rec, rule_set, data):
    rs = rules(rule_set)
    before = _statuses(rec, rs)
    in_data = {m.source.reference for m in rec.malignancies}
    # dropping the NET from (NET, OTHER) with OTHER in the data leaves a finding linked only to the other tumour:
    # that is not less information but a finding about another tumour, which does not count (criteria.md §1a), as
    # if absent; an absent latest "undetermined" may rightly leave "met" (found by this test, 2026-12-03)
    linked = [(f, i) for f in ("ki67", "grades", "disease_status") for i, x in enumerate(getattr(rec, f))
              if NET in x.links]
    if not linked:
        return
    field, i = data.draw(st.sampled_from(linked))
    items = list(getattr(rec, field))
    items[i] = items[i].model_copy(update={"links": tuple(r for r in items[i].links if r != NET)})
    after = _statuses(rec.model_copy(update={field: items}), rs)
    if set(items[i].links) & in_data:  # now about the other tumour only: the same as without the finding
        assert after == _statuses(rec.model_copy(update={field: items[:i] + items[i + 1:]}), rs)
        return
    for name in before:
        if before[name] is Status.INDETERMINATE:
            assert after[name] is not Status.MET, (name, field, items[i])


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=_linked_records(), rule_set=st.sampled_from(["milan-net", "milan-2007"]))
def test_findings_about_another_tumour_never_make_not_met(rec, rule_set):
    rs = rules(rule_set)
    only_other = lambda items: [x for x in items if x.links == (OTHER,)]  # noqa: E731
    without = rec.model_copy(update={f: [x for x in getattr(rec, f) if x.links != (OTHER,)]
                                     for f in ("ki67", "grades", "disease_status")})
    if not any(only_other(getattr(rec, f)) for f in ("ki67", "grades", "disease_status")):
        return
    if not rec.malignancies:
        return  # the link only counts when the other Condition is in the data
    assert _statuses(rec, rs) == _statuses(without, rs)
