"""Adapters: FHIR dicts -> facts, one rule of criteria.md §1/§3/§3a per test, on small hand-written resources."""

from __future__ import annotations

import datetime as dt

import pytest

from milan_fhir._adapters import AdaptStats, RawPrefilter, adapt_resource, build_records
from milan_fhir._adapters._located import Located
from milan_fhir._mappings import CODE_SECTIONS, default_mappings
from milan_fhir.errors import ResourceError

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
MILAN = "http://milan-fhir.org/fhir/CodeSystem/milan-net"
MORPH_URL = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"


@pytest.fixture(scope="module")
def m():
    return default_mappings()


def cc(system, code, display=None):
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def obs(code, system=LOINC, *, id="o1", status="final", subject="Patient/p1", date="2025-03-01", **value):
    r = {"resourceType": "Observation", "id": id, "status": status, "code": cc(system, code)}
    if subject:
        r["subject"] = {"reference": subject}
    if date:
        r["effectiveDateTime"] = date
    r.update(value)
    return r


def ki67(**value):
    return obs("29593-1", **value)


def cond(system, code, *, id="c1", subject="Patient/p1", **extra):
    r = {"resourceType": "Condition", "id": id, "code": cc(system, code), "subject": {"reference": subject}}
    r.update(extra)
    return r


def proc(system, code, *, id="pr1", status="completed", **extra):
    r = {"resourceType": "Procedure", "id": id, "status": status, "code": cc(system, code),
         "subject": {"reference": "Patient/p1"}}
    r.update(extra)
    return r


def morphology_ext(code):
    return [{"url": MORPH_URL, "valueCodeableConcept": cc(ICDO3, code)}]


def record_of(items, m, problems=None):
    problems = [] if problems is None else problems
    records = build_records(items, m, problems)
    assert len(records) == 1, (records, problems)
    return next(iter(records.values()))


# ------------------------------------------------------------------------------------------------ Ki-67 values
@pytest.mark.parametrize(
    "value, percent, comparator",
    [
        ({"valueQuantity": {"value": 12, "unit": "%", "system": UCUM, "code": "%"}}, 12.0, None),
        ({"valueQuantity": {"value": 0.12, "system": UCUM, "code": "1"}}, 12.0, None),
        ({"valueQuantity": {"value": 7, "unit": "%"}}, 7.0, None),
        ({"valueQuantity": {"value": 0.05, "unit": "1"}}, 5.0, None),
        ({"valueQuantity": {"value": 2, "comparator": "<", "system": UCUM, "code": "%"}}, 2.0, "<"),
        ({"valueString": "8%"}, 8.0, None),
        ({"valueString": "8 %"}, 8.0, None),
        ({"valueString": "<2%"}, 2.0, "<"),
        ({"valueString": ">20%"}, 20.0, ">"),
        ({"valueString": "≤ 3 %"}, 3.0, "<="),
        ({"valueString": ">=15%"}, 15.0, ">="),
        ({"valueString": "2.5%"}, 2.5, None),
    ],
)
def test_ki67_value_forms(m, value, percent, comparator):
    rec = record_of([ki67(**value)], m)
    assert [(f.percent, f.comparator) for f in rec.ki67] == [(pytest.approx(percent), comparator)]
    assert rec.ki67[0].source.reference == "Observation/o1"
    assert "Ki-67" in rec.ki67[0].source.value
    assert rec.inputs == {"Observation/o1": None}


@pytest.mark.parametrize(
    "value, field",
    [
        ({"valueQuantity": {"value": 12, "system": UCUM, "code": "mg"}}, "valueQuantity.code"),
        ({"valueQuantity": {"value": 12, "unit": "percent"}}, "valueQuantity.code"),
        ({"valueQuantity": {"value": 12, "system": "http://example.org/units", "code": "%"}}, "valueQuantity.code"),
        ({"valueQuantity": {"value": 12, "system": UCUM, "code": "1"}}, "valueQuantity"),  # 1200 %
        ({"valueString": "12"}, "valueString"),
        ({"valueString": "high"}, "valueString"),
        ({"valueBoolean": True}, "valueBoolean"),
        ({}, "value[x]"),
    ],
)
def test_ki67_unusable_values_are_reported_not_facts(m, value, field):
    rec = record_of([ki67(**value)], m)
    assert rec.ki67 == []
    assert len(rec.unusable) == 1
    u = rec.unusable[0]
    assert (u.reference, u.concept, u.field) == ("Observation/o1", "ki67", field)
    assert "Observation/o1" in rec.inputs  # it counts, its value does not


@pytest.mark.parametrize("status", ["preliminary", "registered", "entered-in-error", "cancelled", "unknown"])
def test_observation_status_not_final_is_ignored_with_reason(m, status):
    rec = record_of([ki67(status=status, valueString="5%")], m)
    assert rec.ki67 == []
    assert [i.reference for i in rec.ignored] == ["Observation/o1"]
    assert status in rec.ignored[0].reason
    assert rec.inputs == {}


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_observation_counting_statuses(m, status):
    rec = record_of([ki67(status=status, valueString="5%")], m)
    assert len(rec.ki67) == 1 and rec.ignored == []


def test_alias_code_and_any_coding_matches(m):
    r = ki67(valueString="4%")
    r["code"] = {"coding": [{"system": "http://local", "code": "KI"}, {"system": LOINC, "code": "85330-9"}]}
    rec = record_of([r], m)
    assert rec.ki67[0].percent == 4


def test_her2_code_is_not_ki67(m):
    problems = []
    records = build_records([obs("85319-2", valueString="5%")], m, problems)
    assert records == {} and problems == []


def test_profile_alone_does_not_make_a_resource_relevant(m):
    r = obs("8867-4", valueQuantity={"value": 70, "unit": "/min"})
    r["meta"] = {"profile": ["http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-marker-test"]}
    stats = AdaptStats()
    assert build_records([r], m, [], stats=stats) == {}
    assert stats.irrelevant == 1


# ------------------------------------------------------------------------------------------------ dates
def test_datetime_with_offset_crossing_midnight_is_utc(m):
    rec = record_of([ki67(date="2025-03-01T22:30:00-05:00", valueString="5%")], m)
    assert rec.ki67[0].source.date == dt.date(2025, 3, 2)


def test_observation_period_start_then_issued(m):
    r = ki67(date=None, valueString="5%", effectivePeriod={"start": "2025-01-10", "end": "2025-02-10"})
    r2 = ki67(id="o2", date=None, valueString="5%", issued="2025-04-01T10:00:00Z")
    r3 = ki67(id="o3", date=None, valueString="5%")
    rec = record_of([r, r2, r3], m)
    assert [f.source.date for f in rec.ki67] == [dt.date(2025, 1, 10), dt.date(2025, 4, 1), None]


def test_condition_onset_dates(m):
    a = cond(ICD, "C7B.02", id="a", onsetPeriod={"start": "2024-05"}, recordedDate="2024-09-01")
    b = cond(ICD, "C7B.02", id="b", onsetAge={"value": 50, "unit": "a", "system": UCUM, "code": "a"},
             recordedDate="2024-09-01")
    c = cond(ICD, "C7B.02", id="c", onsetString="childhood")
    rec = record_of([a, b, c], m)
    assert [f.source.date for f in rec.metastases] == [dt.date(2024, 5, 1), dt.date(2024, 9, 1), None]


def test_procedure_period_end_else_start(m):
    a = proc(CPT, "48150", id="a", performedPeriod={"start": "2023-01-01", "end": "2023-01-03"})
    b = proc(CPT, "48150", id="b", performedPeriod={"start": "2023-02-01"})
    rec = record_of([a, b], m)
    assert [f.source.date for f in rec.procedures] == [dt.date(2023, 1, 3), dt.date(2023, 2, 1)]


# ------------------------------------------------------------------------------------------------ patient, refs
def test_partial_birth_date_and_version(m):
    p = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}, "birthDate": "1965",
         "name": [{"family": "X"}]}
    rec = record_of([p], m)
    assert rec.demographics.birth_date.year == 1965 and rec.demographics.birth_date.month is None
    assert rec.inputs == {"Patient/p1": "3"}
    assert rec.demographics.source.version == "3"


def test_patient_without_resource_still_gets_a_record(m):
    rec = record_of([ki67(valueString="5%")], m)
    assert rec.patient == "Patient/p1" and rec.demographics is None


def test_urn_uuid_references_resolve_through_full_url(m):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:11111111-2222", "resource": {"resourceType": "Patient", "birthDate": "1970-01-02"}},
        {"fullUrl": "urn:uuid:aaaa", "resource": ki67(id=None, subject="urn:uuid:11111111-2222", valueString="3%")},
    ]}
    del bundle["entry"][1]["resource"]["id"]
    rec = record_of([bundle], m)
    assert rec.patient == "Patient/11111111-2222"
    assert rec.demographics is not None
    assert rec.ki67[0].source.reference == "Observation/aaaa"


@pytest.mark.parametrize(
    "ref", ["Patient/p1", "http://x.org/fhir/Patient/p1", "https://x.org/fhir/Patient/p1/_history/4",
            "Patient/p1/_history/2"],
)
def test_subject_reference_forms(m, ref):
    rec = record_of([ki67(subject=ref, valueString="5%")], m)
    assert rec.patient == "Patient/p1"


def test_unresolvable_or_non_patient_subject_is_a_problem(m):
    problems = []
    records = build_records(
        [ki67(id="a", subject="urn:uuid:nowhere", valueString="5%"),
         ki67(id="b", subject="Group/g1", valueString="5%"),
         ki67(id="c", subject=None, valueString="5%"),
         ki67(id="d", valueString="5%")],
        m, problems,
    )
    assert list(records) == ["Patient/p1"]
    assert [(p.resource, p.field) for p in problems] == [
        ("Observation/a", "subject"), ("Observation/b", "subject"), ("Observation/c", "subject")]


def test_adapt_resource_streams_one_resource(m):
    a = adapt_resource(ki67(subject="urn:uuid:x", valueString="5%"), m, resolve={"urn:uuid:x": "Patient/q"})
    assert a.patient == "Patient/q" and a.reference == "Observation/o1" and a.concept == "ki67"
    assert [name for name, _ in a.facts] == ["ki67"]
    assert adapt_resource({"resourceType": "Encounter", "id": "e"}, m) is None


def test_invalid_resource_is_reported_not_fatal(m):
    bad = ki67(id="bad", valueQuantity={"value": "twelve", "system": UCUM, "code": "%"})
    problems = []
    located = [Located(bad, "in.ndjson", 7), Located(ki67(id="good", valueString="5%"), "in.ndjson", 8)]
    rec = record_of(located, m, problems)
    assert [f.source.reference for f in rec.ki67] == ["Observation/good"]
    assert "Observation/bad" not in rec.inputs
    [p] = problems
    assert (p.file, p.line, p.resource, p.field) == ("in.ndjson", 7, "Observation/bad", "valueQuantity.value")
    assert "in.ndjson:7" in str(p) and "Observation/bad" in str(p)


def test_adapt_resource_raises_resource_error_for_invalid(m):
    with pytest.raises(ResourceError) as info:
        adapt_resource(ki67(date="2025-13-01", valueString="5%"), m)
    assert info.value.field == "effectiveDateTime"


def test_irrelevant_resources_are_not_validated_but_counted(m):
    junk = {"resourceType": "Encounter", "id": "e1", "status": 12345}  # invalid, but irrelevant
    stats = AdaptStats()
    problems = []
    assert build_records([junk, obs("8867-4", valueString="x")], m, problems, stats=stats) == {}
    assert problems == [] and stats.irrelevant == 2


def test_duplicate_resource_is_reported_once(m):
    problems = []
    rec = record_of([ki67(valueString="5%"), ki67(valueString="5%")], m, problems)
    assert len(rec.ki67) == 1 and len(problems) == 1


# ------------------------------------------------------------------------------------------------ other observations
def test_liver_burden_fraction(m):
    rec = record_of([obs("liver-tumor-burden", MILAN, valueQuantity={"value": 0.3, "system": UCUM, "code": "1"})], m)
    assert rec.liver_burden[0].percent == pytest.approx(30)


@pytest.mark.parametrize("code, trend", [("268910001", "improved"), ("359746009", "stable"), ("271299001", "worsened")])
def test_disease_status(m, code, trend):
    rec = record_of([obs("97509-4", valueCodeableConcept=cc(SNOMED, code))], m)
    assert [f.trend for f in rec.disease_status] == [trend]


def test_disease_status_undetermined_is_kept_for_the_criterion(m):
    # v2 (criteria.md §3 stable_disease): a latest `undetermined` makes the result indeterminate, so it is a fact
    rec = record_of([obs("97509-4", valueCodeableConcept=cc(SNOMED, "709137006"))], m)
    assert [f.trend for f in rec.disease_status] == ["undetermined"] and rec.ignored == []


@pytest.mark.parametrize(
    "value, present",
    [({"valueBoolean": True}, True), ({"valueBoolean": False}, False),
     ({"valueCodeableConcept": cc(SNOMED, "52101004")}, True), ({"valueCodeableConcept": cc(SNOMED, "2667000")}, False)],
)
def test_staging(m, value, present):
    rec = record_of([obs("extrahepatic-disease", MILAN, **value)], m)
    assert [f.present for f in rec.staging] == [present]


@pytest.mark.parametrize(
    "value, grade",
    [({"valueCodeableConcept": cc(SNOMED, "1155708003")}, 1),
     ({"valueCodeableConcept": cc(SNOMED, "1286893008")}, 2),
     ({"valueCodeableConcept": cc(SNOMED, "1155707008")}, 3),
     ({"valueCodeableConcept": {"text": "G2"}}, 2),
     ({"valueString": "grade 1"}, 1),
     ({"valueString": "G3"}, 3),
     ({"valueString": "Grade II"}, 2)],
)
def test_grade_observation(m, value, grade):
    rec = record_of([obs("21858-6", **value)], m)
    assert [(g.grade, g.kind) for g in rec.grades] == [(grade, "grade")]


def test_grade_observation_unreadable(m):
    rec = record_of([obs("C18000", "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", valueString="GX")], m)
    assert rec.grades == [] and rec.unusable[0].concept == "histologic_grade"


def test_liver_metastasis_count_and_largest(m):
    count = obs("liver-metastasis-count", MILAN, id="n", valueInteger=2)
    liver = {"coding": [{"system": SNOMED, "code": "10200004"}]}
    size = obs("21889-1", id="s", valueQuantity={"value": 2.5, "system": UCUM, "code": "cm"}, bodySite=liver)
    lung = obs("21889-1", id="s2", valueQuantity={"value": 40, "system": UCUM, "code": "mm"},
               bodySite=cc(SNOMED, "39607008"))
    rec = record_of([count, size, lung], m)
    assert [c.count for c in rec.liver_metastasis_counts] == [2]
    assert [s.mm for s in rec.largest_liver_metastasis] == [25.0]
    assert [i.reference for i in rec.ignored] == ["Observation/s2"]


# ------------------------------------------------------------------------------------------------ conditions
def test_icd_without_dot_primary(m):
    rec = record_of([cond(ICD, "C7A012")], m)
    [p] = rec.primaries
    assert (p.site, p.group, p.drainage, p.active) == ("ileum", "small_intestine", "portal", True)
    assert rec.metastases == []


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_condition_refuted_or_entered_in_error_never_counts(m, verification):
    c = cond(ICD, "C7A.012", verificationStatus=cc(
        "http://terminology.hl7.org/CodeSystem/condition-ver-status", verification))
    rec = record_of([c], m)
    assert rec.primaries == [] and rec.inputs == {}
    assert verification in rec.ignored[0].reason


@pytest.mark.parametrize("clinical, active", [("active", True), ("recurrence", True), ("inactive", False),
                                               ("resolved", False), ("remission", False)])
def test_condition_active(m, clinical, active):
    c = cond(ICD, "C7B.03", clinicalStatus=cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical))
    rec = record_of([c], m)
    assert [(x.location, x.active) for x in rec.metastases] == [("extrahepatic", active)]


def test_rectum_primary_is_review_with_note(m):
    [p] = record_of([cond(ICD, "C7A.026")], m).primaries
    assert p.drainage == "review" and p.note


def test_from_body_site_primary(m):
    with_site = cond(ICD, "C7A.8", id="a", bodySite=[cc(SNOMED, "15776009")])
    without = cond(ICD, "C7A.8", id="b")
    rec = record_of([with_site, without], m)
    assert [(p.site, p.drainage) for p in rec.primaries] == [("pancreas", "portal"), ("unreadable", "review")]


def test_mcode_generic_cancer_with_morphology_and_body_site(m):
    c = cond(SNOMED, "363346000", extension=morphology_ext("8240/3"), bodySite=[cc(SNOMED, "34516001")])
    rec = record_of([c], m)
    [p] = rec.primaries
    assert (p.site, p.group, p.drainage) == ("ileum", "small_intestine", "portal")
    assert p.site_path == ("ileum", "small_intestine")
    # v2 (criteria.md §1b): 8240/3 is "neuroendocrine tumour, NOS" and gives no grade (v1 read it as G1)
    assert rec.grades == []


def test_generic_cancer_without_site_is_unreadable(m):
    c = cond(SNOMED, "363346000", extension=morphology_ext("8249/3"))
    rec = record_of([c], m)
    assert [p.site for p in rec.primaries] == ["unreadable"]
    # v2 (criteria.md §3): 8249/3 means G2 or higher
    assert [(g.grade, g.at_least) for g in rec.grades] == [(2, True)]


def test_generic_cancer_without_net_morphology_is_not_a_primary(m):
    plain = cond(SNOMED, "363346000", id="a")
    adeno = cond(SNOMED, "363346000", id="b", extension=morphology_ext("8140/3"))
    # v2 (criteria.md §1a, §1b): a Condition coded as a malignant neoplasm is always recognised: an other malignancy
    [rec] = build_records([plain, adeno], m, []).values()
    assert rec.primaries == []
    assert [(x.kind, x.has_morphology) for x in rec.malignancies] == [("generic", False), ("generic", True)]


def test_pancreas_subsite_needs_morphology(m):
    # v2: without a NET morphology a site code is an other malignancy (it may be the NET primary recorded again)
    [plain] = build_records([cond(ICD, "C25.0")], m, []).values()
    assert plain.primaries == [] and [(x.kind, x.site) for x in plain.malignancies] == [("site_code", "pancreas_head")]
    rec = record_of([cond(ICD, "C25.0", extension=morphology_ext("8246/3"))], m)
    assert [p.site for p in rec.primaries] == ["pancreas_head"]
    assert [(g.grade, g.kind) for g in rec.grades] == [(3, "morphology")]


def test_morphology_code_in_condition_code(m):
    c = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": ICD, "code": "C7A.092"}, {"system": SNOMED, "code": "1286770005"}]}}
    rec = record_of([c], m)
    assert [p.site for p in rec.primaries] == ["stomach"]
    assert [(g.grade, g.kind) for g in rec.grades] == [(2, "morphology")]


def test_unverified_morphology_is_flagged(m):
    c = cond(SNOMED, "363346000", extension=morphology_ext("8151/3"), bodySite=[cc(SNOMED, "78961009")])
    [p] = record_of([c], m).primaries
    assert p.source.unverified_codes == ("SNOMED 78961009",)


def test_high_grade_diagnosis_from_inactive_condition(m):
    c = cond(ICD, "C7A.1", clinicalStatus=cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved"))
    rec = record_of([c], m)
    assert [(g.grade, g.kind) for g in rec.grades] == [(3, "diagnosis")]
    assert [(p.site, p.active) for p in rec.primaries] == [("unreadable", False)]


@pytest.mark.parametrize(
    "code, body, location, site",
    [
        ("C7B.02", None, "liver", "liver"),
        ("C7B.03", None, "extrahepatic", "bone"),
        ("C7B.00", None, "unspecified", None),
        ("C7B.8", "39607008", "extrahepatic", "lung"),
        ("C7B.00", "10200004", "liver", "liver"),
    ],
)
def test_metastasis_sites(m, code, body, location, site):
    extra = {"bodySite": [cc(SNOMED, body)]} if body else {}
    [x] = record_of([cond(ICD, code, **extra)], m).metastases
    assert (x.location, x.site) == (location, site)


@pytest.mark.parametrize("body, location", [("10200004", "liver"), ("39607008", "extrahepatic"), (None, "unspecified")])
def test_secondary_malignant_from_body_site(m, body, location):
    extra = {"bodySite": [cc(SNOMED, body)]} if body else {}
    rec = record_of([cond(SNOMED, "128462008", **extra)], m)
    assert [x.location for x in rec.metastases] == [location]


def test_metastasis_with_unmapped_body_site_is_unspecified_and_reported(m):
    rec = record_of([cond(SNOMED, "128462008", bodySite=[cc(SNOMED, "123")])], m)
    assert rec.metastases[0].location == "unspecified"
    assert rec.unusable[0].field == "bodySite"


def test_metastasis_with_morphology_is_also_grade_evidence(m):
    rec = record_of([cond(ICD, "C7B.02", extension=morphology_ext("8246/3"))], m)
    assert [x.location for x in rec.metastases] == ["liver"] and rec.primaries == []
    assert [(g.grade, g.kind) for g in rec.grades] == [(3, "morphology")]


# ------------------------------------------------------------------------------------------------ procedures
def test_primary_resection_groups_and_reason(m):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:c-1", "resource": cond(ICD, "C25.4", id="c-1")},
        {"fullUrl": "urn:uuid:pr", "resource": proc(CPT, "48150", bodySite=[cc(SNOMED, "64163001")],
                                                     reasonReference=[{"reference": "urn:uuid:c-1"}],
                                                     performedDateTime="2023-05-01")},
    ]}
    rec = record_of([bundle], m)
    [p] = rec.procedures
    assert p.kind == "primary_resection"
    assert p.code_groups == ("pancreas", "small_intestine", "stomach")
    assert p.code_site_paths == (("pancreas_head", "pancreas"), ("duodenum", "small_intestine"),
                                 ("distal_stomach", "stomach"))
    assert p.body_site_groups == ("pancreas",) and p.body_site_paths == (("pancreas_head", "pancreas"),)
    assert p.reason_references == ("Condition/c-1",)
    assert p.source.unverified_codes == ()  # v2: CPT 48150 is V2 (codes.md)


@pytest.mark.parametrize("status", ["in-progress", "not-done", "entered-in-error", "stopped"])
def test_procedure_not_completed_is_ignored(m, status):
    rec = record_of([proc(CPT, "48150", status=status)], m)
    assert rec.procedures == [] and status in rec.ignored[0].reason


@pytest.mark.parametrize("code, kind", [("47120", "liver_resection_minor"), ("47130", "liver_resection_major"),
                                         ("47135", "liver_transplant")])
def test_liver_procedures(m, code, kind):
    assert [p.kind for p in record_of([proc(CPT, code)], m).procedures] == [kind]


# ------------------------------------------------------------------------------------------------ prefilter
def _variants(entry):
    yield entry.system, entry.code
    if entry.system == ICD:
        yield entry.system, entry.code.replace(".", "")
        yield entry.system, entry.code.replace(".", "").lower()


PREFILTER_SECTIONS = [s for s in CODE_SECTIONS if s not in ("body_sites",) and not s.endswith("_values")]


def test_prefilter_never_rejects_a_mapped_code(m):
    import orjson

    pf = RawPrefilter(m)
    checked = 0
    for section in PREFILTER_SECTIONS:
        for entry in m.codes_of(section):
            for system, code in _variants(entry):
                for rtype in ("Observation", "Condition", "Procedure"):
                    res = {"resourceType": rtype, "id": "x", "code": {"coding": [{"system": system, "code": code}]}}
                    assert pf.wants(orjson.dumps(res)), (section, code, rtype)
                    spaced = orjson.dumps(res, option=orjson.OPT_INDENT_2).replace(b"\n", b"")
                    assert pf.wants(spaced), (section, code, rtype)
                    checked += 1
    assert checked > 300


def test_prefilter_agrees_with_adapters_on_relevance(m):
    import orjson

    pf = RawPrefilter(m)
    relevant = [ki67(valueString="5%"), cond(SNOMED, "363346000", extension=morphology_ext("8240/3")),
                {"resourceType": "Patient", "id": "p"}]
    for r in relevant:
        assert adapt_resource(r, m) is not None
        assert pf.wants(orjson.dumps(r))
    assert not pf.wants(orjson.dumps({"resourceType": "Encounter", "id": "e", "subject": {"reference": "Patient/p"}}))
    assert not pf.wants(orjson.dumps(obs("8867-4", valueQuantity={"value": 70})))


def test_tumour_size_with_focus_on_a_liver_metastasis(m):
    size = obs("33728-7", id="s", valueQuantity={"value": 18, "system": UCUM, "code": "mm"},
               focus=[{"reference": "Condition/met"}])
    other = obs("33728-7", id="t", valueQuantity={"value": 50, "system": UCUM, "code": "mm"},
                focus=[{"reference": "Condition/bone"}])
    rec = record_of([size, other, cond(ICD, "C7B.02", id="met"), cond(ICD, "C7B.03", id="bone")], m)
    assert [(f.mm, f.source.reference) for f in rec.largest_liver_metastasis] == [(18.0, "Observation/s")]
    assert "Observation/s" in rec.inputs and "Observation/t" not in rec.inputs
    assert [i.reference for i in rec.ignored] == ["Observation/t"]


def test_build_records_for_one_patient_ignores_other_subjects(m):
    rec = build_records([ki67(id="a", valueString="5%"), ki67(id="b", subject="Patient/other", valueString="50%")],
                        m, [], patient="Patient/p1")
    assert list(rec) == ["Patient/p1"]
    r = rec["Patient/p1"]
    assert [f.source.reference for f in r.ki67] == ["Observation/a"]
    assert [i.reference for i in r.ignored] == ["Observation/b"] and "Patient/other" in r.ignored[0].reason
    assert "Observation/b" not in r.inputs


def test_problem_text_names_bundle_entry(m):
    bad = ki67(id="bad", valueQuantity={"value": "x"})
    problems = []
    build_records([Located(bad, "bundle.json", 3, None)], m, problems)
    assert str(problems[0]).startswith("bundle.json:3, Observation/bad, field valueQuantity.value: ")  # the file line where the entry starts (issue 9)


def test_prefilter_reads_resource_type_anywhere(m):
    pf = RawPrefilter(m)
    line = b'{"id": "x", "code": {"coding": [{"system": "http://loinc.org", "code": " 29593-1 "}]}, "resourceType": "Observation"}'
    assert pf.wants(line)
    assert pf.wants(b'{"id":"p","resourceType":"Patient"}')
    assert not pf.wants(b'{"id":"x","code":{"coding":[{"code":"29593-1"}]},"resourceType":"Encounter"}')
    assert pf.wants(b'{"resourceType":"Condition","code":{"coding":[{"code":"c7A.012"}]}}')


def test_tumour_size_in_a_component(m):
    liver = [cc(SNOMED, "10200004")]
    size = obs("21889-1", id="s", bodySite=liver[0], component=[
        {"code": cc(LOINC, "33728-7"), "valueQuantity": {"value": 3.5, "system": UCUM, "code": "cm"}}])
    rec = record_of([size], m)
    assert [f.mm for f in rec.largest_liver_metastasis] == [35.0]


def test_patient_is_validated_only_on_the_fields_the_rules_read(m):
    odd_gender = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-02-03", "gender": 5}
    bad_birth = {"resourceType": "Patient", "id": "p2", "birthDate": "1970-13"}
    problems = []
    records = build_records([odd_gender, bad_birth], m, problems)
    assert list(records) == ["Patient/p1"]
    assert [(p.resource, p.field) for p in problems] == [("Patient/p2", "birthDate")]


# ------------------------------------------------------------------------------------------------- v2
def coded(concept, **extra):
    """A Condition whose whole ``code`` is given (cond() builds a one-coding code)."""
    r = cond(ICD, "X", **extra)
    r["code"] = concept
    return r


@pytest.mark.parametrize("text, percent, comparator", [
    ("8%", 8.0, None), (" 8 % ", 8.0, None), ("8,5%", 8.5, None), ("<2%", 2.0, "<"), ("≤ 2 %", 2.0, "<="),
    (">= 20%", 20.0, ">="), ("≥20%", 20.0, ">="), ("> 20 %", 20.0, ">"),
])
def test_v2_ki67_string_grammar_accepts(m, text, percent, comparator):
    [k] = record_of([ki67(valueString=text)], m).ki67
    assert (k.percent, k.comparator) == (percent, comparator)


@pytest.mark.parametrize("text", ["8-15%", "Ki-67 15% (hot spot)", "=<2%", ".5%", "8", "ca. 5%", "5%%", "",
                                  "1" * 201 + "%", "<" + " " * 500 + "5%"])
def test_v2_ki67_string_grammar_rejects(m, text):
    problems: list = []
    records = build_records([ki67(valueString=text)], m, problems)
    if text == "":  # an empty string fails R4B validation: reported, and it still caps low_grade
        assert problems and records["Patient/p1"].unusable[0].concept == "ki67"
        return
    rec = records["Patient/p1"]
    assert rec.ki67 == [] and [u.concept for u in rec.unusable] == ["ki67"]


def test_v2_links_focus_and_related_condition(m):
    related = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-related-condition"
    o = ki67(valueString="5%", focus=[{"reference": "Condition/a"}, {"reference": "Specimen/s"}],
             extension=[{"url": related, "valueReference": {"reference": "Condition/b"}}])
    [k] = record_of([o], m).ki67
    assert k.links == ("Condition/a", "Condition/b")


def test_v2_text_nets_and_exclusions(m):
    local = "http://example.org/local"
    mets = record_of([coded({"text": "Metastatic carcinoid, bone"})], m).metastases
    assert [(x.location, x.text_only) for x in mets] == [("unspecified", True)]
    for text in ("History of metastatic disease", "Family history of cancer", "Malignant hypertension",
                 "Benign metastasizing leiomyoma", "Screening for malignant neoplasm"):
        assert build_records([coded({"text": text})], m, []) == {}, text
    assert build_records([coded({"coding": [{"system": ICD, "code": "Z80.0",
                                                                 "display": "Family history of malignant neoplasm"}]})],
                         m, []) == {}
    [mal] = record_of([coded({"text": "Diffuse large B-cell lymphoma"})], m).malignancies
    assert mal.kind == "text"


def test_v2_condition_suspected_abatement_certainty(m):
    ver = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    [x] = record_of([cond(ICD, "C79.51", verificationStatus=cc(ver, "differential"),
                          abatementDateTime="2026-03-01")], m).metastases
    assert x.suspected and x.verification == "differential" and x.abatement == dt.date(2026, 3, 1)
    gm = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
    url = "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit"
    code = {"coding": [{"system": gm, "code": "C78.7", "extension": [{"url": url, "valueCoding": {"code": "Z"}}]}]}
    [z] = record_of([coded(code)], m).metastases
    assert not z.active
    code["coding"][0]["extension"][0]["valueCoding"]["code"] = "A"
    rec = build_records([coded(code)], m, [])["Patient/p1"]
    assert rec.metastases == [] and "Diagnosesicherheit" in rec.ignored[0].reason


def test_v2_metastasis_sites_several_codings_and_body_site(m):
    two = {"coding": [{"system": ICD, "code": "C78.7"}, {"system": ICD, "code": "C79.51"}]}
    [x] = record_of([coded(two)], m).metastases
    assert x.location == "unspecified"  # liver and bone conflict: unknown site, caps
    nos_liver = {"coding": [{"system": ICD, "code": "C7B.00"}, {"system": ICD, "code": "C7B.02"}]}
    [y] = record_of([coded(nos_liver)], m).metastases
    assert y.location == "liver"  # the most specific site wins
    [n] = record_of([cond(SNOMED, "128462008", bodySite=[cc(SNOMED, "59441001")])], m).metastases
    assert n.location == "review"
    [t] = record_of([cond(SNOMED, "128462008", bodySite=[cc(ICDO3, "C22.0")])], m).metastases
    assert t.location == "liver"  # ICD-O-3 topography in bodySite


def test_v2_primary_code_and_body_site(m):
    [p] = record_of([cond(ICD, "C7A.019", bodySite=[cc(SNOMED, "34516001")])], m).primaries
    assert p.site == "ileum"  # a bodySite refines a NOS code
    [q] = record_of([cond(ICD, "C7A.012", bodySite=[cc(SNOMED, "69695003")])], m).primaries
    assert q.site == "site_conflict" and q.drainage == "review"
    [r] = record_of([cond(ICD, "C80.1", bodySite=[cc(SNOMED, "15776009")])], m).primaries
    assert r.site == "pancreas"
    [s] = record_of([cond(ICD, "C7A.098", bodySite=[cc(SNOMED, "10200004")])], m).primaries
    assert s.site == "liver" and s.drainage == "review"


def test_v2_procedure_reasons(m):
    pr = proc(CPT, "44140", reasonCode=[cc(ICD, "K57.32"), cc(ICD, "C7A.012")],
              reasonReference=[{"reference": "urn:uuid:nowhere"}, {"reference": "Condition/c"}])
    [f] = record_of([pr], m).procedures
    assert f.other_reason_codes == ("icd-10-cm K57.32",)
    assert f.reason_references == ("unresolved:urn:uuid:nowhere", "Condition/c")


def test_v2_deceased_and_transplant_status(m):
    rec = record_of([{"resourceType": "Patient", "id": "p1", "deceasedDateTime": "2025-05-01T10:00:00Z"}], m)
    assert rec.demographics.deceased_date == dt.date(2025, 5, 1)
    [t] = record_of([cond(ICD, "Z94.4")], m).transplant_status
    assert "Z94.4" in t.label


def test_v2_prefilter_passes_conditions_patterns_and_ki67_names(m):
    pf = RawPrefilter(m)
    assert pf.wants(b'{"resourceType":"Condition","id":"x","code":{"text":"Knochenmetastasen"}}')
    assert pf.wants(b'{"resourceType":"Procedure","id":"x","code":{"coding":[{"code":"5-504.0"}]}}')
    assert pf.wants(b'{"resourceType":"Observation","id":"x","code":{"text":"Ki67 index"}}')
    assert not pf.wants(b'{"resourceType":"Observation","id":"x","code":{"coding":[{"code":"8310-5"}]}}')


def test_cached_condition_codings_keep_each_resource_its_own_morphology_and_text(m):
    """The code part of a Condition's classification is cached per mapping set; what is not in the codings
    (a morphology extension) is read per resource, and a repeated coding gives the same answer."""
    from milan_fhir._adapters._condition import classify
    from milan_fhir._mappings import default_mappings

    fresh = default_mappings()  # a mapping set with empty caches
    # the same site code, first with a NET morphology extension, then without: only the first is a primary NET
    with_morph = cond(ICD, "C25.0", id="a", extension=morphology_ext("8246/3"))
    without = cond(ICD, "C25.0", id="b")
    first, second, again = classify(with_morph, fresh), classify(without, fresh), classify(with_morph, fresh)
    assert first is not None and first.concept == "primary" and first.morphology is not None
    assert second is None or second.morphology is None
    assert again == first
    assert classify(without, m) == second  # the same as with a mapping set that had cached nothing else
    # the text net by text: two Conditions with one uncoded text each, answered per text
    met = {"resourceType": "Condition", "id": "t1", "code": {"text": "Liver metastases"}}
    benign = {"resourceType": "Condition", "id": "t2", "code": {"text": "Benign liver cyst"}}
    assert classify(met, fresh).concept == "metastasis"
    assert classify(benign, fresh) is None
    assert classify(met, fresh).concept == "metastasis"


def test_a_condition_coding_of_other_types_is_not_cached_and_does_not_fail(m):
    from milan_fhir._adapters._condition import classify

    odd = {"resourceType": "Condition", "id": "x",
           "code": {"coding": [{"system": ICD, "code": ["C7A.1"]}], "text": [{"not": "a string"}]}}
    assert classify(odd, m) is None
