"""The public API of milan_fhir."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import milan_fhir
from milan_fhir import errors

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "02-age-60-vs-61.json"
AS_OF = dt.date(2026, 6, 30)


def _resources() -> list[dict]:
    return [e["resource"] for e in json.loads(FIXTURE.read_text())["entry"]]


def test_all_is_explicit_and_importable():
    expected = {
        "__version__", "evaluate", "load_mappings", "default_mappings", "to_json", "to_risk_assessment",
        "to_provenance", "render_table", "structure_definitions", "Evaluation", "CriterionResult", "Caution", "Status",
        "Verdict", "PatientRecord", "RuleSet", "Mappings", "InputProblem", "errors",
        "FhirClient", "evaluate_patient", "write_back", "run_cohort", "SmartBackendAuth",
    }
    assert set(milan_fhir.__all__) == expected
    for name in milan_fhir.__all__:
        assert getattr(milan_fhir, name) is not None
    assert isinstance(milan_fhir.__version__, str) and milan_fhir.__version__
    assert issubclass(errors.InputError, errors.MilanFhirError)


def test_path_dict_and_iterable_give_the_same_results():
    from_path = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)
    from_str = milan_fhir.evaluate(str(FIXTURE), as_of="2026-06-30")
    from_bundle = milan_fhir.evaluate(json.loads(FIXTURE.read_text()), as_of=AS_OF)
    from_list = milan_fhir.evaluate(iter(_resources()), as_of=AS_OF)
    dumps = [[milan_fhir.to_json(e) for e in evs] for evs in (from_path, from_str, from_bundle, from_list)]
    assert dumps[0] == dumps[1] == dumps[2] == dumps[3]
    assert [e.patient for e in from_path] == ["Patient/v02-p1", "Patient/v02-p2"]
    assert all(isinstance(e, milan_fhir.Evaluation) for e in from_path)


def test_results_sorted_by_patient_whatever_the_input_order():
    evs = milan_fhir.evaluate(list(reversed(_resources())), as_of=AS_OF)
    assert [e.patient for e in evs] == sorted(e.patient for e in evs)


def test_as_of_defaults_to_today_utc():
    evs = milan_fhir.evaluate(FIXTURE)
    assert evs[0].as_of == dt.datetime.now(dt.timezone.utc).date()


def test_rule_set_and_mappings_arguments(tmp_path):
    evs = milan_fhir.evaluate(FIXTURE, as_of=AS_OF, rule_set="milan-2007")
    assert {e.rule_set for e in evs} == {"milan-2007"}
    local = tmp_path / "local.yaml"
    local.write_text("mapping_set: {name: st-elsewhere, version: '2'}\n")
    evs = milan_fhir.evaluate(FIXTURE, as_of=AS_OF, mappings=local)
    assert "st-elsewhere@2" in evs[0].mapping_version
    m = milan_fhir.load_mappings(local)
    assert milan_fhir.evaluate(FIXTURE, as_of=AS_OF, mappings=m)[0].mapping_version == evs[0].mapping_version


def test_errors_are_typed(tmp_path):
    with pytest.raises(errors.RuleSetError):
        milan_fhir.evaluate(FIXTURE, rule_set="nope")
    with pytest.raises(errors.InputError):
        milan_fhir.evaluate(tmp_path / "missing.json")
    with pytest.raises(errors.InputError):
        milan_fhir.evaluate(FIXTURE, as_of="not a date")
    with pytest.raises(errors.MappingError):
        milan_fhir.evaluate(FIXTURE, mappings=tmp_path / "missing.yaml")


def test_problems_collected():
    resources = _resources()
    broken = next(r for r in resources if r["resourceType"] == "Observation" and "valueQuantity" in r)
    broken = {**broken, "id": "broken", "valueQuantity": {**broken["valueQuantity"], "value": "abc"}}
    resources.append(broken)
    problems: list = []
    evs = milan_fhir.evaluate(resources, as_of=AS_OF, problems=problems)
    assert len(evs) == 2
    assert problems and all(isinstance(p, milan_fhir.InputProblem) for p in problems)
    assert [p.resource for p in problems] == ["Observation/broken"]


def test_writers_through_the_api():
    ev = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)[0]
    ra = milan_fhir.to_risk_assessment(ev)
    assert ra["resourceType"] == "RiskAssessment" and ra["subject"]["reference"] == ev.patient
    prov = milan_fhir.to_provenance(ev, f"RiskAssessment/{ra['id']}/_history/1")
    assert prov["agent"][0]["who"]["display"] == f"milan-fhir {milan_fhir.__version__}"
    assert ev.patient in milan_fhir.render_table([ev], width=100, colour=False)
    assert len(milan_fhir.structure_definitions()) == 4  # criterion-result, caution, input-fingerprint, profile


def test_cautions_are_typed_in_the_public_api():
    ev = milan_fhir.evaluate(FIXTURE, as_of=AS_OF)[0]
    assert isinstance(ev.cautions, tuple)
    assert all(isinstance(c, milan_fhir.Caution) for c in ev.cautions)
    c = milan_fhir.Caution(code="prior-malignancy", reason="Prior breast carcinoma (Condition/b1).")
    with_caution = ev.model_copy(update={"cautions": (c,)})
    assert milan_fhir.to_json(with_caution)["cautions"] == [
        {"code": "prior-malignancy", "reason": "Prior breast carcinoma (Condition/b1).", "evidence": [],
         "evidence_detail": []}
    ]
    from milan_fhir._domain import CAUTION_CODES

    assert [x["code"] for x in milan_fhir.to_json(ev)["cautions"]] == [x.code for x in ev.cautions]
    assert all(x.code in CAUTION_CODES for x in ev.cautions)


def test_skipped_resources_are_logged_when_no_problem_list_is_given(caplog):
    import logging

    import milan_fhir

    bad = {"resourceType": "Observation", "id": "bad", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
           "subject": {"reference": "Patient/x"}, "valueQuantity": {"value": "not a number"}}
    with caplog.at_level(logging.WARNING, logger="milan_fhir"):
        milan_fhir.evaluate([{"resourceType": "Patient", "id": "x"}, bad], as_of="2026-06-30")
    assert any("Observation/bad" in r.getMessage() for r in caplog.records)
