"""Property-based: arbitrary partial or odd FHIR data never raises out of `evaluate`, and never yields `met`
without evidence. The resources are built from the real mapped codes (so they reach every adapter and
criterion) with every field possibly missing, of the wrong type, or oddly valued."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import milan_fhir
from milan_fhir import Status, default_mappings
from milan_fhir._mappings import CODE_SECTIONS

MAPPINGS = default_mappings()
CODINGS = sorted({(e.system, e.code) for s in CODE_SECTIONS for e in MAPPINGS.codes_of(s)})

odd_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", "1", "%", "<2%", ">20 %", "8 %", "G2", "abc", "2025-13-45"]),
)
odd_date = st.one_of(
    odd_scalar,
    st.sampled_from(["2025", "2025-06", "2025-06-30", "2025-06-30T23:30:00-05:00", "2026-12-31T00:00:00Z",
                     "1965-02-29", "0001-01-01", "9999-12-31"]),
    st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)).map(str),
)
coding = st.one_of(
    st.sampled_from(CODINGS).map(lambda sc: {"system": sc[0], "code": sc[1]}),
    st.fixed_dictionaries({}, optional={"system": odd_scalar, "code": odd_scalar, "display": odd_scalar}),
)
concept = st.one_of(odd_scalar, st.fixed_dictionaries({}, optional={"coding": st.one_of(odd_scalar, st.lists(coding, max_size=3)), "text": odd_scalar}))
quantity = st.one_of(odd_scalar, st.fixed_dictionaries({}, optional={
    "value": odd_scalar, "unit": st.sampled_from(["%", "1", "mm", "cm", "x"]) | odd_scalar,
    "code": st.sampled_from(["%", "1", "mm", "cm"]) | odd_scalar,
    "system": st.sampled_from(["http://unitsofmeasure.org"]) | odd_scalar,
    "comparator": st.sampled_from(["<", "<=", ">", ">="]) | odd_scalar,
}))
subject = st.one_of(odd_scalar, st.fixed_dictionaries({}, optional={
    "reference": st.sampled_from(["Patient/p1", "Patient/p2", "urn:uuid:0c3f", "http://x/fhir/Patient/p1",
                                  "Group/g", "Patient/"]) | odd_scalar}))
meta = st.one_of(odd_scalar, st.fixed_dictionaries({}, optional={"versionId": odd_scalar}))
ids = st.sampled_from(["a", "b", "c", "p1", "p2"]) | odd_scalar


def _resource(kind: str, fields: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({"resourceType": st.just(kind)}, optional={"id": ids, "meta": meta, **fields})


observation = _resource("Observation", {
    "status": st.sampled_from(["final", "amended", "corrected", "preliminary", "entered-in-error"]) | odd_scalar,
    "code": concept, "subject": subject, "effectiveDateTime": odd_date, "issued": odd_date,
    "effectivePeriod": st.fixed_dictionaries({}, optional={"start": odd_date, "end": odd_date}) | odd_scalar,
    "valueQuantity": quantity, "valueString": odd_scalar, "valueBoolean": odd_scalar,
    "valueCodeableConcept": concept, "valueInteger": odd_scalar,
    "bodySite": concept, "focus": st.lists(subject, max_size=2) | odd_scalar,
})
condition = _resource("Condition", {
    "code": concept, "subject": subject, "onsetDateTime": odd_date, "onsetString": odd_scalar,
    "recordedDate": odd_date, "bodySite": st.lists(concept, max_size=2) | odd_scalar,
    "clinicalStatus": concept, "verificationStatus": concept,
    "extension": st.lists(st.fixed_dictionaries({}, optional={"url": st.just(MAPPINGS.extensions["histology_morphology"]) | odd_scalar, "valueCodeableConcept": concept}), max_size=2) | odd_scalar,
})
procedure = _resource("Procedure", {
    "status": st.sampled_from(["completed", "in-progress"]) | odd_scalar, "code": concept, "subject": subject,
    "performedDateTime": odd_date,
    "performedPeriod": st.fixed_dictionaries({}, optional={"start": odd_date, "end": odd_date}) | odd_scalar,
    "bodySite": st.lists(concept, max_size=2) | odd_scalar,
    "reasonReference": st.lists(st.fixed_dictionaries({}, optional={"reference": st.sampled_from(["Condition/a", "Condition/b"]) | odd_scalar}), max_size=2) | odd_scalar,
})
patient = _resource("Patient", {"birthDate": odd_date})
resources = st.lists(st.one_of(observation, condition, procedure, patient, odd_scalar), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(items=resources, as_of=st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)),
       rule_set=st.sampled_from(["milan-net", "milan-2007"]))
def test_odd_fhir_never_raises_and_met_always_has_evidence(items, as_of, rule_set):
    problems: list = []
    evaluations = milan_fhir.evaluate(items, as_of=as_of, rule_set=rule_set, problems=problems)
    for ev in evaluations:
        assert set(ev.criteria) == {"age", "low_grade", "liver_burden", "primary_resected_portal",
                                    "stable_disease", "no_extrahepatic_disease"}
        for name, result in ev.criteria.items():
            if result.status is Status.MET:
                assert result.evidence, f"{name} met without evidence"
            if result.status is Status.INDETERMINATE:
                assert result.missing, f"{name} indeterminate without saying what is missing"
            for src in result.evidence:
                assert src.date is None or src.date <= as_of, f"{name} used {src.reference} dated after as_of"
        # the writers take whatever the evaluation produced
        assert milan_fhir.to_json(ev)["patient"] == ev.patient
        assert milan_fhir.to_risk_assessment(ev)["resourceType"] == "RiskAssessment"
    for p in problems:
        assert str(p)  # every skipped resource is reported in words
