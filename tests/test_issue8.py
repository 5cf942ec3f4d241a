"""Issue 8 (spec v2) end to end on raw FHIR: an eligible patient, and every adverse resource the issue and the
spec name added to it one at a time: none may leave the patient ``eligible``. Also the other direction (another
tumour's evidence never makes a criterion ``not_met``) and the recognition of MII / ICD-10-GM / OID data.

Both the batch path (``build_records``) and the streaming path (``adapt_resource`` one resource at a time, as
the cohort does) are checked to give the same verdict.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._adapters import adapt_resource, build_records, settle_pending
from milan_fhir._domain import PatientRecord, Status, Verdict
from milan_fhir._evaluate import evaluate_record
from milan_fhir._mappings import default_mappings
from milan_fhir.errors import ResourceError

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
GM_OLD = "http://fhir.de/CodeSystem/dimdi/icd-10-gm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
CPT = "http://www.ama-assn.org/go/cpt"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
MILAN = "http://milan-fhir.org/fhir/CodeSystem/milan-net"
UCUM = "http://unitsofmeasure.org"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
RELATED = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-related-condition"
CERTAINTY = "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit"
AS_OF = dt.date(2026, 1, 15)
M = default_mappings()
RULES = M.rule_set("milan-net")


def cc(system, code, display=None, text=None):
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def cond(id, system, code, *, onset="2024-01-10", display=None, **extra):
    r = {"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p1"},
         "code": cc(system, code, display), "onsetDateTime": onset}
    r.update(extra)
    return r


def obs(id, system, code, *, when="2025-12-01", **value):
    r = {"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": "Patient/p1"},
         "code": cc(system, code), "effectiveDateTime": when}
    r.update(value)
    return r


def pct(value):
    return {"valueQuantity": {"value": value, "unit": "%", "system": UCUM, "code": "%"}}


def status(id, trend_code, when):
    return obs(id, LOINC, "97509-4", when=when, valueCodeableConcept=cc(SNOMED, trend_code))


def proc(id, system, code, *, when="2024-02-01", **extra):
    r = {"resourceType": "Procedure", "id": id, "status": "completed", "subject": {"reference": "Patient/p1"},
         "code": cc(system, code), "performedDateTime": when}
    r.update(extra)
    return r


def eligible():
    return [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01"},
        cond("prim", ICD, "C7A.012"),
        cond("nelm", ICD, "C7B.02"),
        obs("k", LOINC, "29593-1", when="2024-02-01", **pct(4)),
        obs("b", MILAN, "liver-tumor-burden", **pct(30)),
        status("s1", "359746009", "2025-03-01"),
        status("s2", "359746009", "2025-12-01"),
        obs("st", MILAN, "extrahepatic-disease", valueBoolean=False),
        proc("res", CPT, "44120", reasonReference=[{"reference": "Condition/prim"}]),
    ]


def evaluate(resources, rule_set="milan-net"):
    problems = []
    records = build_records(copy.deepcopy(resources), M, problems)
    assert all(p.resource in ("Observation/bad", "Condition/bad") for p in problems), problems
    return evaluate_record(records["Patient/p1"], M.rule_set(rule_set), AS_OF, M.version)


def evaluate_streamed(resources, rule_set="milan-net"):
    """One resource at a time through adapt_resource, as the cohort does."""
    record = PatientRecord(patient="Patient/p1")
    pending = []
    for r in copy.deepcopy(resources):
        try:
            a = adapt_resource(r, M)
        except ResourceError as exc:  # reported by the caller; an invalid resource of a criterion's kind caps
            a = getattr(exc, "adapted", None)
        if a is None:
            continue
        a.apply(record)
        if a.pending:
            pending.append(a)
    settle_pending(record, pending)
    return evaluate_record(record, M.rule_set(rule_set), AS_OF, M.version)


def test_baseline_is_eligible_on_both_paths():
    for run in (evaluate, evaluate_streamed):
        ev = run(eligible())
        assert ev.verdict is Verdict.ELIGIBLE, {n: r.reason for n, r in ev.criteria.items()}
        assert ev.cautions == ()


def _sigmoid_for_diverticulitis():
    base = [r for r in eligible() if r["id"] != "res"]
    return base + [proc("res2", CPT, "44140", reasonCode=[cc(ICD, "K57.32", "Diverticulitis of large intestine")])]


def _whipple_for_ipmn():
    base = [r for r in eligible() if r["id"] != "res"]
    ipmn = cond("ipmn", ICD, "D13.6", display="Benign neoplasm of pancreas (IPMN)")
    return base + [ipmn, proc("res2", CPT, "48150", reasonReference=[{"reference": "Condition/ipmn"}])]


def _whipple_unlinked():
    base = [r for r in eligible() if r["id"] != "res"]
    return base + [proc("res2", CPT, "48150")]


def _replace(id, new):
    return [new if r["id"] == id else r for r in eligible()]


#: adverse additions, each with why it must not leave the patient eligible (criteria.md v2)
ADVERSE = {
    "C79.89 other specified sites": lambda: eligible() + [cond("x", ICD, "C79.89")],
    "C78.5 large intestine": lambda: eligible() + [cond("x", ICD, "C78.5")],
    "C80.0 disseminated (ICD-10-CM)": lambda: eligible() + [cond("x", ICD, "C80.0")],
    "WHO ICD-10 C79.5 bone": lambda: eligible() + [cond("x", WHO, "C79.5")],
    "ICD-10-GM C79.88 (5-char)": lambda: eligible() + [cond("x", GM, "C79.88")],
    "ICD-10-GM C78.0+ (mark)": lambda: eligible() + [cond("x", GM, "C78.0+")],
    "old ICD-10-GM URI C77.0": lambda: eligible() + [cond("x", GM_OLD, "C77.0")],
    "ICD-10-CM by OID C79.51": lambda: eligible() + [cond("x", "urn:oid:2.16.840.1.113883.6.90", "C7951")],
    "SNOMED 94181007 axillary nodes": lambda: eligible() + [cond("x", SNOMED, "94181007")],
    "SNOMED 128462008 + bone": lambda: eligible() + [cond("x", SNOMED, "128462008", bodySite=[cc(SNOMED, "272673000")])],
    "SNOMED 128462008 + spleen": lambda: eligible() + [cond("x", SNOMED, "128462008", bodySite=[cc(SNOMED, "78961009")])],
    "SNOMED 128462008 no bodySite": lambda: eligible() + [cond("x", SNOMED, "128462008")],
    "SNOMED OID 128462008 + unmapped bodySite": lambda: eligible() + [
        cond("x", "urn:oid:2.16.840.1.113883.6.96", "128462008", bodySite=[cc(SNOMED, "1234567")])],
    "C79.9 unknown site": lambda: eligible() + [cond("x", ICD, "C79.9")],
    "C7B.00 no bodySite": lambda: eligible() + [cond("x", ICD, "C7B.00")],
    "C77.2 nodal review": lambda: eligible() + [cond("x", ICD, "C77.2")],
    "R18.0 malignant ascites": lambda: eligible() + [cond("x", ICD, "R18.0")],
    "text net metastasis": lambda: eligible() + [cond("x", SNOMED, "999999999", display="Metastasis to bone")],
    "text net German": lambda: eligible() + [cond("x", "http://example.org/local", "M1",
                                                  display="Metastasen der Wirbelsäule")],
    "text net German compound": lambda: eligible() + [cond("x", "http://example.org/local", "M1",
                                                           display="Knochenmetastasen")],
    "suspected metastasis": lambda: eligible() + [cond("x", ICD, "C79.51",
                                                       verificationStatus=cc(VERIFICATION, "differential"))],
    "GM suspected metastasis": lambda: eligible() + [{**cond("x", GM, "C79.5"), "code": {"coding": [
        {"system": GM, "code": "C79.5", "extension": [{"url": CERTAINTY, "valueCoding": {"code": "V"}}]}]}}],
    "metastasis abated after as_of": lambda: eligible() + [cond("x", ICD, "C79.51", clinicalStatus=cc(
        CLINICAL, "resolved"), abatementDateTime="2026-03-01")],
    "active breast cancer (other malignancy)": lambda: eligible() + [cond("x", ICD, "C50.911")],
    "active prostate cancer (WHO)": lambda: eligible() + [cond("x", WHO, "C61")],
    "text net other malignancy": lambda: eligible() + [cond("x", "http://example.org/local", "L1",
                                                            display="Lymphoma, diffuse large B-cell")],
    "unusable Ki-67 '8-15%'": lambda: eligible() + [obs("k2", LOINC, "29593-1", valueString="8-15%")],
    "Ki-67 under unmapped code": lambda: eligible() + [{**obs("k2", "http://example.org/lab", "KI67X",
                                                              valueString="4%"), "code": {"text": "Ki67 index"}}],
    "hostile Ki-67 text": lambda: eligible() + [obs("k2", LOINC, "29593-1", valueString="1" * 5000 + "%")],
    "invalid Ki-67 (empty valueString fails validation)": lambda: eligible() + [
        obs("bad", LOINC, "29593-1", valueString="")],
    "invalid metastasis Condition": lambda: eligible() + [cond("bad", ICD, "C79.51", onsetDateTime="not a date")],
    "Ki-67 valueInteger": lambda: eligible() + [obs("k2", LOINC, "29593-1", valueInteger=4)],
    "grade G1-G2 text": lambda: [r for r in eligible() if r["id"] != "k"] + [
        obs("g", LOINC, "21858-6", valueString="G1-G2")],
    "unreadable grade": lambda: eligible() + [obs("g", LOINC, "33732-9", valueString="GX")],
    "newer unreadable burden": lambda: eligible() + [obs("b2", MILAN, "liver-tumor-burden", when="2026-01-01",
                                                         valueString="about a third")],
    "two-year-old burden": lambda: _replace("b", obs("b", MILAN, "liver-tumor-burden", when="2024-01-01", **pct(30))),
    "latest disease status undetermined": lambda: eligible() + [status("s3", "709137006", "2026-01-01")],
    "unknown disease-status code newer": lambda: eligible() + [status("s3", "123456", "2026-01-01")],
    "undated worsened": lambda: eligible() + [{**status("s3", "271299001", "2026-01-01"),
                                              "effectiveDateTime": None}],
    "deceasedBoolean": lambda: _replace("p1", {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01",
                                               "deceasedBoolean": True}),
    "deceasedDateTime": lambda: _replace("p1", {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01",
                                                "deceasedDateTime": "2025-11-01"}),
    "liver transplant (SNOMED)": lambda: eligible() + [proc("lt", SNOMED, "18027006", when="2025-06-01")],
    "liver transplant (OPS)": lambda: eligible() + [proc("lt", OPS, "5-504.0", when="2025-06-01")],
    "liver transplant status Z94.4 (GM)": lambda: eligible() + [cond("lt", GM, "Z94.4")],
    "no liver metastasis record": lambda: [r for r in _replace("b", obs("b", MILAN, "liver-tumor-burden", **pct(0)))
                                           if r["id"] != "nelm"],
    "sigmoid colectomy for diverticulitis": _sigmoid_for_diverticulitis,
    "Whipple for an IPMN": _whipple_for_ipmn,
    "Whipple without link for ileal NET": _whipple_unlinked,
    "resection 30 years before the NET": lambda: _replace("res", proc("res", CPT, "44120", when="1994-01-01")),
    "high-grade morphology 8154/3 (MiNEN)": lambda: eligible() + [
        obs("mo", LOINC, "59847-4", valueCodeableConcept=cc(ICDO3, "8154/3"), focus=[{"reference": "Condition/prim"}])],
    "suspected primary at a systemic site": lambda: eligible() + [cond("x", ICD, "C7A.090", verificationStatus=cc(
        VERIFICATION, "provisional"))],
}


@pytest.mark.parametrize("name", sorted(ADVERSE))
def test_each_adverse_resource_leaves_no_eligible(name):
    resources = ADVERSE[name]()
    batch = evaluate(resources)
    streamed = evaluate_streamed(resources)
    assert batch.verdict is not Verdict.ELIGIBLE, name
    assert streamed.verdict is batch.verdict
    assert {n: r.status for n, r in streamed.criteria.items()} == {n: r.status for n, r in batch.criteria.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.sampled_from(sorted(ADVERSE)), min_size=1, max_size=3, unique=True))
def test_any_combination_of_adverse_resources_is_not_eligible(names):
    """Each scenario as a change to the eligible patient (removed, replaced, added resources), applied together."""
    base = {(r["resourceType"], r["id"]): r for r in eligible()}
    combined = dict(base)
    for name in names:
        scenario = {(r["resourceType"], r["id"]): r for r in ADVERSE[name]()}
        for key in set(base) - set(scenario):
            combined.pop(key, None)
        for key, r in scenario.items():
            if base.get(key) != r:
                combined[key] = r
    assert evaluate(list(combined.values())).verdict is not Verdict.ELIGIBLE, names


# ------------------------------------------------------------------------------------------------- details
def test_deceased_and_transplant_are_ineligible_with_cautions():
    ev = evaluate(ADVERSE["deceasedBoolean"]())
    assert ev.verdict is Verdict.INELIGIBLE and [c.code for c in ev.cautions] == ["deceased"]
    assert all(r.status is Status.MET for r in ev.criteria.values())  # the criteria are still reported in full
    ev = evaluate(ADVERSE["liver transplant (OPS)"]())
    assert ev.verdict is Verdict.INELIGIBLE and [c.code for c in ev.cautions] == ["prior-liver-transplant"]
    ev = evaluate(_replace("p1", {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01",
                                  "deceasedDateTime": "2026-06-01"}))
    assert ev.verdict is Verdict.ELIGIBLE  # dies after as_of: not deceased on as_of


def test_other_malignancy_caution_and_prior_malignancy():
    ev = evaluate(ADVERSE["active breast cancer (other malignancy)"]())
    assert ev.verdict is Verdict.INDETERMINATE
    assert [c.code for c in ev.cautions] == ["other-malignancy"]
    assert "Condition/x" in ev.cautions[0].reason
    resolved = eligible() + [cond("x", ICD, "C50.911", clinicalStatus=cc(CLINICAL, "resolved"), onset="2010-01-01")]
    ev = evaluate(resolved)
    assert ev.verdict is Verdict.ELIGIBLE and [c.code for c in ev.cautions] == ["prior-malignancy"]
    ev = evaluate(eligible() + [cond("z", ICD, "Z85.3")])
    assert ev.verdict is Verdict.ELIGIBLE and [c.code for c in ev.cautions] == ["prior-malignancy"]


def test_cautions_in_order():
    resources = _replace("p1", {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01",
                                "deceasedBoolean": True})
    resources = [r for r in resources if r["id"] not in ("nelm", "b")] + [proc("lt", CPT, "47135"), cond("x", ICD, "C50.9"),
                                                               cond("z", ICD, "Z85.3")]
    ev = evaluate(resources)
    assert [c.code for c in ev.cautions] == ["deceased", "prior-liver-transplant", "no-liver-metastasis-record",
                                             "other-malignancy", "prior-malignancy"]


def test_prostate_stable_status_does_not_count_for_the_net():
    prostate = cond("pc", ICD, "C61")
    stable_pc = [status("s3", "359746009", "2026-01-01") | {"focus": [{"reference": "Condition/pc"}]}]
    ev = evaluate([r for r in eligible() if r["id"] not in ("s1", "s2")] + [prostate] + stable_pc)
    assert ev.criteria["stable_disease"].status is Status.INDETERMINATE
    assert any(i.reference == "Observation/s3" and "Condition/pc" in i.reason for i in ev.ignored)


def test_another_tumours_high_ki67_never_makes_not_met():
    breast = cond("br", ICD, "C50.911", clinicalStatus=cc(CLINICAL, "resolved"), onset="2010-01-01")
    k = obs("kb", LOINC, "85330-9", **pct(35))
    k["extension"] = [{"url": RELATED, "valueReference": {"reference": "Condition/br"}}]
    ev = evaluate(eligible() + [breast, k])
    assert ev.criteria["low_grade"].status is Status.MET
    assert any(i.reference == "Observation/kb" for i in ev.ignored)


def test_differential_diagnosis_never_makes_not_met():
    sus = cond("x", ICD, "C79.51", verificationStatus=cc(VERIFICATION, "differential"))
    ev = evaluate(eligible() + [sus])
    res = ev.criteria["no_extrahepatic_disease"]
    assert res.status is Status.INDETERMINATE and "differential" in res.reason and "confirm or refute" in res.reason


def test_refuted_gm_certainty_never_counts():
    refuted = {**cond("x", GM, "C79.5"), "code": {"coding": [
        {"system": GM, "code": "C79.5", "extension": [{"url": CERTAINTY, "valueCoding": {"code": "A"}}]}]}}
    assert evaluate(eligible() + [refuted]).verdict is Verdict.ELIGIBLE


def test_mii_oncology_primary_with_morphology_observation():
    """German MII data: ICD-10-GM site code C17.2 plus an ICD-O-3 morphology Observation naming it."""
    base = [r for r in eligible() if r["id"] not in ("prim", "res", "nelm")]
    prim = cond("prim", GM, "C17.2")
    morph = obs("mo", LOINC, "59847-4", valueCodeableConcept=cc(ICDO3, "8240/3"),
                focus=[{"reference": "Condition/prim"}])
    nelm = cond("nelm", GM, "C78.7")
    res = proc("res", CPT, "44120", reasonReference=[{"reference": "Condition/prim"}])
    ev = evaluate(base + [prim, morph, nelm, res])
    assert ev.verdict is Verdict.ELIGIBLE, ({n: r.reason for n, r in ev.criteria.items()}, ev.cautions)
    # without the morphology the site code is an other malignancy: it may be the NET or another cancer
    ev = evaluate(base + [prim, nelm, res])
    assert ev.verdict is Verdict.INDETERMINATE
    assert "other-malignancy" in [c.code for c in ev.cautions]


def test_same_tumour_twice_is_not_an_other_malignancy():
    billing = cond("bill", ICD, "C17.2")
    ev = evaluate(eligible() + [billing])
    assert ev.verdict is Verdict.ELIGIBLE and ev.cautions == ()


def test_small_cell_lung_cancer_beside_ileal_net_is_an_other_malignancy():
    sclc = cond("sclc", ICD, "C34.90", extension=[{
        "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior",
        "valueCodeableConcept": cc(ICDO3, "8041/3")}], clinicalStatus=cc(CLINICAL, "resolved"), onset="2008-01-01")
    ev = evaluate(eligible() + [sclc])
    assert ev.criteria["low_grade"].status is Status.MET  # not high-grade NET evidence
    assert [c.code for c in ev.cautions] == ["prior-malignancy"]
    # a neuroendocrine carcinoma at the NET's own site is high-grade evidence
    nec = cond("nec", ICD, "C17.2", extension=sclc["extension"])
    ev = evaluate(eligible() + [nec])
    assert ev.criteria["low_grade"].status is Status.NOT_MET


def test_liver_sited_net_beside_extrahepatic_primary_is_a_liver_record():
    base = [r for r in eligible() if r["id"] != "nelm"]
    liver = cond("liv", SNOMED, "363346000", bodySite=[cc(SNOMED, "10200004")], extension=[{
        "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior",
        "valueCodeableConcept": cc(ICDO3, "8240/3")}])
    ev = evaluate(base + [liver])
    assert ev.cautions == () and ev.verdict is Verdict.ELIGIBLE
    assert ev.criteria["primary_resected_portal"].status is Status.MET


def test_resection_ignored_reasons():
    ev = evaluate(_sigmoid_for_diverticulitis())
    assert ev.criteria["primary_resected_portal"].status is Status.INDETERMINATE
    [why] = [i.reason for i in ev.ignored if i.reference == "Procedure/res2"]
    assert "K57.32" in why and "not a code of the NET" in why
    ev = evaluate(_whipple_for_ipmn())
    assert any(i.reference == "Procedure/res2" and "Condition/ipmn" in i.reason for i in ev.ignored)
    ev = evaluate(_whipple_unlinked())
    [why] = [i.reason for i in ev.ignored if i.reference == "Procedure/res2"]
    assert "does not match the primary's site ileum" in why
    ev = evaluate(ADVERSE["resection 30 years before the NET"]())
    [why] = [i.reason for i in ev.ignored if i.reference == "Procedure/res"]
    assert "years before the NET was recorded" in why


def test_right_hemicolectomy_matches_ileal_primary_not_jejunal():
    base = [r for r in eligible() if r["id"] != "res"]
    hemi = proc("res", CPT, "44160")
    assert evaluate(base + [hemi]).criteria["primary_resected_portal"].status is Status.MET
    jej = [cond("prim", ICD, "C7A.011") if r["id"] == "prim" else r for r in base]
    assert evaluate(jej + [hemi]).criteria["primary_resected_portal"].status is Status.INDETERMINATE


def test_8240_is_no_grade_and_g1_g2_is_g2():
    base = [r for r in eligible() if r["id"] != "k"]
    morph = obs("mo", LOINC, "59847-4", valueCodeableConcept=cc(ICDO3, "8240/3"),
                focus=[{"reference": "Condition/prim"}])
    assert evaluate(base + [morph]).criteria["low_grade"].status is Status.INDETERMINATE
    g = obs("g", LOINC, "21858-6", valueString="G1-G2")
    assert evaluate(base + [g]).criteria["low_grade"].status is Status.INDETERMINATE
    assert evaluate(base + [g], "milan-2007").criteria["low_grade"].status is Status.MET
    g1 = obs("g", LOINC, "33732-9", valueString="G1")
    assert evaluate(base + [g1]).criteria["low_grade"].status is Status.MET


def test_stable_run_partial_start_counts_at_its_latest_day():
    # 2025-06 as a start: counted as 2025-06-30; the latest on 2025-12-15 is then not 6 months later
    base = [r for r in eligible() if r["id"] not in ("s1", "s2")]
    s1 = status("s1", "359746009", "2025-06")
    s2 = status("s2", "359746009", "2025-12-15")
    assert evaluate(base + [s1, s2]).criteria["stable_disease"].status is Status.INDETERMINATE
    s1 = status("s1", "359746009", "2025-06-01")
    assert evaluate(base + [s1, s2]).criteria["stable_disease"].status is Status.MET
