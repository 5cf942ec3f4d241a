"""criteria.md §1c (v2): the five prerequisites, each on both sides, and the §1a attribution rules they rest on."""

from __future__ import annotations

from builders import AS_OF, D, burden, malignancy, metastasis, patient, primary, record, rules
from milan_fhir._criteria._attribution import net_view
from milan_fhir._criteria._cautions import cautions
from milan_fhir._domain import (
    MorphologyObservationFact,
    PatientFact,
    ProcedureFact,
    Source,
    TransplantStatusFact,
)

LIVER = metastasis("liver", ref="Condition/nelm", site="liver", label="liver")


def codes(**facts):
    facts.setdefault("metastases", [LIVER])
    return [c.code for c in cautions(record(**facts), rules(), AS_OF)]


def test_none_for_a_plain_patient():
    assert codes(demographics=patient("1970-01-01"), primaries=[primary()]) == []


def test_deceased_boolean_and_date():
    born = patient("1970-01-01").birth_date
    assert codes(demographics=PatientFact(birth_date=born, deceased=True, source=Source(reference="Patient/p1"))) \
        == ["deceased"]
    on = PatientFact(birth_date=born, deceased_date=AS_OF, source=Source(reference="Patient/p1"))
    after = PatientFact(birth_date=born, deceased_date=D("2026-01-16"), source=Source(reference="Patient/p1"))
    assert codes(demographics=on) == ["deceased"] and codes(demographics=after) == []
    unreadable = PatientFact(birth_date=born, deceased_unreadable="deceasedDateTime 'soon' is not a date",
                             source=Source(reference="Patient/p1"))
    assert codes(demographics=unreadable) == ["deceased"]


def test_prior_liver_transplant_procedure_or_status_undated_counts():
    lt = ProcedureFact(kind="liver_transplant", source=Source(reference="Procedure/lt", date=None))
    later = ProcedureFact(kind="liver_transplant", source=Source(reference="Procedure/lt", date=D("2026-02-01")))
    assert codes(procedures=[lt]) == ["prior-liver-transplant"]
    assert codes(procedures=[later]) == []
    z = TransplantStatusFact(label="Liver transplant status (ICD-10-CM Z94.4)",
                             source=Source(reference="Condition/z", date=D("2024-01-01")))
    assert codes(transplant_status=[z]) == ["prior-liver-transplant"]


def test_no_liver_metastasis_record():
    assert codes(metastases=[]) == ["no-liver-metastasis-record"]
    # a suspected liver metastasis counts as a record; an inactive one does not
    sus = LIVER.model_copy(update={"suspected": True})
    assert codes(metastases=[sus]) == []
    assert codes(metastases=[LIVER.model_copy(update={"active": False})]) == ["no-liver-metastasis-record"]
    # a burden above 0 % within 6 months is a record; an old one, 0 % or a bound that may be 0 are not
    assert codes(metastases=[], liver_burden=[burden(20, "2025-08-01")]) == []
    assert codes(metastases=[], liver_burden=[burden(20, None)]) == []
    assert codes(metastases=[], liver_burden=[burden(20, "2025-07-01")]) == ["no-liver-metastasis-record"]
    assert codes(metastases=[], liver_burden=[burden(0, "2025-12-01")]) == ["no-liver-metastasis-record"]
    assert codes(metastases=[], liver_burden=[burden(5, "2025-12-01", comparator="<")]) == \
        ["no-liver-metastasis-record"]


def test_other_and_prior_malignancy():
    assert codes(malignancies=[malignancy()]) == ["other-malignancy"]
    assert codes(malignancies=[malignancy(when=None)]) == ["other-malignancy"]
    assert codes(malignancies=[malignancy(suspected=True)]) == ["other-malignancy"]
    assert codes(malignancies=[malignancy(when="2026-02-01")]) == []  # after as_of
    assert codes(malignancies=[malignancy(active=False)]) == ["prior-malignancy"]
    abated_later = malignancy(active=False).model_copy(update={"abatement": D("2026-06-01")})
    assert codes(malignancies=[abated_later]) == ["other-malignancy"]
    assert codes(malignancies=[malignancy(kind="history", active=False, label="Z85.3")]) == ["prior-malignancy"]
    both = [malignancy(ref="Condition/a"), malignancy(ref="Condition/b", active=False)]
    assert codes(malignancies=both) == ["other-malignancy", "prior-malignancy"]
    reason = cautions(record(metastases=[LIVER], malignancies=[malignancy(kind="site_code", site="ileum",
                                                                          ref="Condition/s")]), rules(), AS_OF)
    assert "may be the NET primary or another cancer" in reason[0].reason


# ------------------------------------------------------------------------------------------------- §1a, §1d
def _view(**facts):
    return net_view(record(**facts), rules(), AS_OF)


def test_same_tumour_twice():
    billing = malignancy(kind="site_code", site="ileum", ref="Condition/bill")
    v = _view(primaries=[primary("ileum", ref="Condition/p")], malignancies=[billing])
    assert v.others == [] and "Condition/bill" in v.net_refs
    elsewhere = malignancy(kind="site_code", site="stomach", ref="Condition/bill")
    v = _view(primaries=[primary("ileum", ref="Condition/p")], malignancies=[elsewhere])
    assert [o.source.reference for o in v.others] == ["Condition/bill"]
    with_morph = malignancy(kind="site_code", site="ileum", ref="Condition/bill", has_morphology=True)
    assert _view(primaries=[primary("ileum")], malignancies=[with_morph]).others == [with_morph]


def test_site_code_promoted_by_a_linked_morphology_observation():
    site_code = malignancy(kind="site_code", site="ileum", ref="Condition/c")
    morph = MorphologyObservationFact(net=True, label="8240/3", links=("Condition/c",),
                                      source=Source(reference="Observation/m", date=D("2024-01-01")))
    v = _view(malignancies=[site_code], morphology_observations=[morph])
    assert [p.source.reference for p in v.primaries] == ["Condition/c"] and v.others == []
    unlinked = morph.model_copy(update={"links": ()})
    assert _view(malignancies=[site_code], morphology_observations=[unlinked]).primaries == []


def test_neuroendocrine_carcinoma_rule():
    ileal = primary("ileum", ref="Condition/p")
    nec_lung = primary("lung", ref="Condition/nec").model_copy(update={"carcinoma": True})
    v = _view(primaries=[ileal, nec_lung])
    assert [p.source.reference for p in v.primaries] == ["Condition/p"]
    assert [o.source.reference for o in v.others] == ["Condition/nec"]
    # alone, at an unknown site, or at the NET's site it is part of the NET
    assert [p.source.reference for p in _view(primaries=[nec_lung]).primaries] == ["Condition/nec"]
    nec_unknown = primary("unreadable", ref="Condition/nec").model_copy(update={"carcinoma": True})
    assert len(_view(primaries=[ileal, nec_unknown]).primaries) == 2
    nec_ileum = primary("ileum", ref="Condition/nec").model_copy(update={"carcinoma": True})
    assert len(_view(primaries=[ileal, nec_ileum]).primaries) == 2
    # in the liver beside an extrahepatic primary: a liver-metastasis record
    nec_liver = primary("liver", ref="Condition/nec").model_copy(update={"carcinoma": True})
    v = _view(primaries=[ileal, nec_liver])
    assert [m.source.reference for m in v.metastases if m.location == "liver"] == ["Condition/nec"]
    assert "Condition/nec" in v.net_refs


def test_attribution_links_and_lead():
    ileal = primary("ileum", ref="Condition/p", when="2020-01-01")
    old_other = malignancy(ref="Condition/o", active=False, when="2005-01-01")
    v = _view(primaries=[ileal], malignancies=[old_other])
    assert v.attribute(("Condition/p",), None).kind == "net"
    assert v.attribute(("Condition/o",), None).kind == "other"
    assert v.attribute(("Condition/unknown",), D("2020-03-01")).kind == "net"  # not in the data: no link
    assert v.attribute((), D("2019-07-01")).kind == "net"  # within 6 months before the NET's earliest record
    assert v.attribute((), D("2019-06-30")).kind == "ambiguous"
    assert v.attribute((), None).kind == "ambiguous"
    assert _view(primaries=[ileal]).attribute((), None).kind == "net"  # no other malignancy at all
    active = malignancy(ref="Condition/o", when="2024-01-01")
    assert _view(primaries=[ileal], malignancies=[active]).attribute((), D("2025-01-01")).kind == "ambiguous"


def test_site_code_with_a_linked_non_net_morphology_is_another_cancer():
    ileal = primary("ileum", ref="Condition/p")
    site_code = malignancy(kind="site_code", site="ileum", ref="Condition/c")
    adeno = MorphologyObservationFact(net=False, label="8140/3", links=("Condition/c",),
                                      source=Source(reference="Observation/m", date=D("2024-01-01")))
    assert _view(primaries=[ileal], malignancies=[site_code]).others == []  # the NET recorded again
    v = _view(primaries=[ileal], malignancies=[site_code], morphology_observations=[adeno])
    assert [o.source.reference for o in v.others] == ["Condition/c"]
