"""The FHIR writer: RiskAssessment, Provenance and the shipped conformance resources."""

from __future__ import annotations

import datetime as dt

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.structuredefinition import StructureDefinition

from milan_fhir._domain import Status, Verdict
from milan_fhir._mappings import default_mappings
from milan_fhir._criteria._subgroups import subgroups
from milan_fhir._writers import fhir

from _writer_samples import CAUTIONS, evaluation, full_record, src


@pytest.fixture(scope="module")
def mappings():
    return default_mappings()


def _ext(ext_list, url):
    return [e for e in ext_list or [] if e["url"] == url]


def test_round_trips_through_r4b_model(mappings):
    ra = fhir.risk_assessment(evaluation(record=full_record()), mappings)
    model = RiskAssessment.model_validate(ra)
    back = model.model_dump(mode="json", exclude_none=True)
    assert back["status"] == "final"
    assert back["subject"] == {"reference": "Patient/p1"}
    assert back["occurrenceDateTime"] == "2026-01-15"
    assert back["prediction"][0]["outcome"]["coding"][0]["code"] == "eligible"
    assert back["meta"]["profile"] == [fhir.PROFILE_URL]


def test_core_fields(mappings):
    ra = fhir.risk_assessment(evaluation(record=full_record()), mappings)
    assert ra["condition"]["reference"] == "Condition/met1"
    method = ra["method"]["coding"][0]
    assert (method["system"], method["code"], method["version"]) == (fhir.RULE_SET_SYSTEM, "milan-net", "1.0.0")
    basis = [b["reference"] for b in ra["basis"]]
    assert "Observation/k1/_history/3" in basis and "Procedure/res" in basis
    assert len(basis) == len(set(basis))
    outcome = ra["prediction"][0]["outcome"]
    assert outcome["coding"][0]["system"] == fhir.VERDICT_SYSTEM and outcome["text"]


def test_no_condition_without_liver_metastasis(mappings):
    ra = fhir.risk_assessment(evaluation(), mappings)
    assert "condition" not in ra


def test_criterion_results_extension(mappings):
    ev = evaluation(statuses={"stable_disease": Status.INDETERMINATE, "age": Status.NOT_MET})
    ra = fhir.risk_assessment(ev, mappings)
    exts = _ext(ra["prediction"][0]["outcome"].get("extension"), fhir.CRITERION_RESULT_URL)
    assert len(exts) == 6
    by_name = {}
    for ext in exts:
        parts = {}
        for p in ext["extension"]:
            value = next(v for k, v in p.items() if k.startswith("value"))
            parts.setdefault(p["url"], []).append(value)
        by_name[parts["name"][0]] = parts
    assert by_name["age"]["status"] == ["not_met"]
    assert by_name["stable_disease"]["status"] == ["indeterminate"]
    assert by_name["stable_disease"]["missing"] == ["a recent measurement"]
    assert "evidence" not in by_name["stable_disease"]
    assert [r["reference"] for r in by_name["low_grade"]["evidence"]] == ["Observation/k1/_history/3"]
    assert by_name["age"]["reason"] == ["age is not_met per the cited evidence."]


def test_identifier_and_id_deterministic_and_differ_by_rule_set(mappings):
    a = fhir.risk_assessment(evaluation(), mappings)
    b = fhir.risk_assessment(evaluation(as_of=dt.date(2026, 6, 1)), mappings)
    c = fhir.risk_assessment(evaluation(rule_set="milan-2007"), mappings)
    d = fhir.risk_assessment(evaluation(patient="Patient/p2"), mappings)
    assert a["identifier"] == b["identifier"] and a["id"] == b["id"]
    assert a["identifier"][0]["system"] == fhir.IDENTIFIER_SYSTEM
    assert a["identifier"] != c["identifier"] and a["id"] != c["id"]
    assert a["identifier"] != d["identifier"] and a["id"] != d["id"]
    assert a["id"].startswith("milan-") and len(a["id"]) <= 64


def test_fingerprint_changes_only_with_inputs(mappings):
    base = evaluation()
    fp = fhir.fingerprint(base, mappings)
    assert fp.startswith("sha256:")
    assert fhir.fingerprint(evaluation(), mappings) == fp
    assert fhir.fingerprint(evaluation(as_of=dt.date(2026, 2, 1)), mappings) == fp  # the date alone changes nothing
    changed_inputs = dict(base.inputs, **{"Observation/k1": "4"})
    assert fhir.fingerprint(evaluation(inputs=changed_inputs), mappings) != fp
    added = dict(base.inputs, **{"Observation/new": "1"})
    assert fhir.fingerprint(evaluation(inputs=added), mappings) != fp
    assert fhir.fingerprint(evaluation(statuses={"age": Status.NOT_MET}), mappings) != fp
    assert fhir.fingerprint(evaluation(rule_set="milan-2007"), mappings) != fp
    ra = fhir.risk_assessment(base, mappings)
    assert fhir.read_fingerprint(ra) == fp


def test_fingerprint_ignores_reason_texts_that_change_with_the_day(mappings):
    """v2: the fingerprint is of the inputs and the result (verdict, statuses, cautions, software version), not of
    the reason texts: a reason quoting the day or the age in years changes nothing while the status holds."""
    from milan_fhir._domain import CriterionResult

    def with_age(day: dt.date, years: int, status: Status = Status.MET):
        ev = evaluation(as_of=day, statuses={"age": status})
        crit = dict(ev.criteria)
        crit["age"] = CriterionResult(
            name="age", status=status, reason=f"Age {years} years on {day.isoformat()} (Patient/p1).",
            evidence=crit["age"].evidence,
        )
        return ev.model_copy(update={"criteria": crit})

    today = fhir.fingerprint(with_age(dt.date(2026, 1, 15), 55), mappings)
    assert fhir.fingerprint(with_age(dt.date(2026, 1, 16), 55), mappings) == today
    assert fhir.fingerprint(with_age(dt.date(2026, 5, 3), 56), mappings) == today  # a birthday, still met
    assert fhir.fingerprint(with_age(dt.date(2031, 5, 3), 61, Status.NOT_MET), mappings) != today  # past the limit


def test_fingerprint_of_the_result_verdict_cautions_software(mappings):
    base = evaluation()
    fp = fhir.fingerprint(base, mappings)
    # same inputs, a result that changed with time: a caution appears, the verdict changes
    assert fhir.fingerprint(evaluation(cautions=[CAUTIONS["other-malignancy"]]), mappings) != fp
    assert fhir.fingerprint(evaluation(cautions=[CAUTIONS["prior-malignancy"]]), mappings) != fp
    assert fhir.fingerprint(base.model_copy(update={"verdict": Verdict.INDETERMINATE}), mappings) != fp
    # the caution's evidence counts, its reason text does not
    moved = CAUTIONS["other-malignancy"].model_copy(update={"evidence": (src("Condition/other"),)})
    reworded = CAUTIONS["other-malignancy"].model_copy(update={"reason": "Worded otherwise."})
    one = fhir.fingerprint(evaluation(cautions=[CAUTIONS["other-malignancy"]]), mappings)
    assert fhir.fingerprint(evaluation(cautions=[moved]), mappings) != one
    assert fhir.fingerprint(evaluation(cautions=[reworded]), mappings) == one
    # another software version writes a new version
    assert fhir.fingerprint(base, mappings, software_version="1.0.0") != fhir.fingerprint(
        base, mappings, software_version="1.0.1")
    ra = fhir.risk_assessment(base, mappings, software_version="1.0.0")
    assert fhir.read_fingerprint(ra) == fhir.fingerprint(base, mappings, software_version="1.0.0")


def test_fingerprint_follows_the_subgroups_shown(mappings):
    shows = fhir.fingerprint(evaluation(record=full_record(count=2)), mappings)
    assert fhir.fingerprint(evaluation(record=full_record(count=2)), mappings) == shows
    assert fhir.fingerprint(evaluation(record=full_record(count=3)), mappings) != shows


def test_fingerprint_follows_mapping_content(mappings):
    import dataclasses

    first, *rest = mappings.codes["ki67"]
    changed = (first.model_copy(update={"code": "99999-9"}), *rest)
    other = dataclasses.replace(mappings, codes={**mappings.codes, "ki67": changed})  # mappings are read-only
    assert fhir.fingerprint(evaluation(), other) != fhir.fingerprint(evaluation(), mappings)


def test_literature_only_when_eligible_and_ras2(mappings):
    rec = full_record()
    eligible = fhir.risk_assessment(evaluation(record=rec), mappings)
    assert len(eligible["prediction"]) > 1
    assert eligible["mitigation"] == mappings.mitigation
    for p in eligible["prediction"][1:]:
        assert 0 <= p["probabilityDecimal"] <= 100  # ras-2
        assert p["whenRange"]["low"] == p["whenRange"]["high"]
        assert p["whenRange"]["low"]["code"] == "a"
        assert "n=" in p["rationale"]
    texts = {p["outcome"]["text"]: p for p in eligible["prediction"][1:]}
    assert texts["5-year overall survival after liver transplantation within Milan"]["probabilityDecimal"] == 97.2
    assert texts["10-year overall survival after liver transplantation within Milan"]["whenRange"]["low"]["value"] == 10
    for verdict_statuses in ({"age": Status.NOT_MET}, {"age": Status.INDETERMINATE}):
        ra = fhir.risk_assessment(evaluation(record=rec, statuses=verdict_statuses), mappings)
        assert len(ra["prediction"]) == 1
        assert "mitigation" not in ra
        assert "probabilityDecimal" not in ra["prediction"][0]


def _subgroup_outcomes(ra):
    return {p["outcome"]["text"] for p in ra["prediction"][1:]}


def test_subgroup_predictions_only_with_data(mappings):
    shown = _subgroup_outcomes(fhir.risk_assessment(evaluation(record=full_record()), mappings))
    assert any("G1" in t for t in shown)
    assert any("minor liver resection" in t for t in shown)
    assert any("1-2 liver metastases" in t for t in shown)
    assert any("below 3 cm" in t for t in shown)

    rec = full_record(grade=2, count=3, mm=30.0, minor_resection=False)
    none = _subgroup_outcomes(fhir.risk_assessment(evaluation(record=rec), mappings))
    assert len(none) == 3  # only the three `always` figures
    assert not any("G1" in t or "minor" in t or "1-2" in t or "3 cm" in t for t in none)

    # no record at all: the always-figures only
    assert len(_subgroup_outcomes(fhir.risk_assessment(evaluation(), mappings))) == 3


def test_grade_1_from_ki67_and_not_when_higher_evidence(mappings):
    as_of = dt.date(2026, 1, 15)
    rec = full_record(grade=1, ki67=2.0)
    assert "grade_1" in subgroups(rec, as_of)
    assert "Observation" in subgroups(rec, as_of)["grade_1"]
    rec = full_record(grade=1, ki67=5.0)  # Ki-67 5 % is G2 whatever the grade finding says
    assert "grade_1" not in subgroups(rec, as_of)
    rec = full_record(grade=2, ki67=2.0)
    assert "grade_1" not in subgroups(rec, as_of)
    # facts after as_of do not count
    assert "liver_metastases_1_to_2" not in subgroups(full_record(), dt.date(2025, 9, 1))


def test_narrative(mappings):
    ra = fhir.risk_assessment(evaluation(statuses={"age": Status.NOT_MET}), mappings)
    text = ra["text"]
    assert text["status"] == "generated"
    div = text["div"]
    assert div.startswith('<div xmlns="http://www.w3.org/1999/xhtml">') and div.endswith("</div>")
    assert "<table>" in div and div.count("<tr>") == 7
    assert "not met" in div and "Observation/k1/_history/3" in div


def test_narrative_escapes_markup(mappings):
    from milan_fhir._domain import CriterionResult

    ev = evaluation()
    crit = dict(ev.criteria)
    crit["age"] = CriterionResult(name="age", status=Status.MET, reason="age <60 & fine", evidence=crit["age"].evidence)
    ra = fhir.risk_assessment(ev.model_copy(update={"criteria": crit}), mappings)
    assert "age &lt;60 &amp; fine" in ra["text"]["div"]


def test_provenance(mappings):
    ev = evaluation()
    prov = fhir.provenance(
        ev, "RiskAssessment/milan-x/_history/2", recorded=dt.datetime(2026, 1, 15, 10, 0), software_version="9.9.9"
    )
    Provenance.model_validate(prov)
    assert prov["target"] == [{"reference": "RiskAssessment/milan-x/_history/2"}]
    assert prov["recorded"] == "2026-01-15T10:00:00+00:00"
    assert prov["agent"][0]["who"]["display"] == "milan-fhir 9.9.9"
    sources = [e["what"]["reference"] for e in prov["entity"]]
    assert all(e["role"] == "source" for e in prov["entity"])
    assert "Observation/k1/_history/3" in sources and "Procedure/res" in sources
    assert len(sources) == len(ev.inputs)


def test_structure_definitions_valid():
    sds = fhir.structure_definitions()
    urls = {sd["url"] for sd in sds}
    assert urls == {fhir.PROFILE_URL, fhir.CRITERION_RESULT_URL, fhir.CAUTION_URL, fhir.INPUT_FINGERPRINT_URL}
    for sd in sds:
        StructureDefinition.model_validate(sd)
        assert sd["fhirVersion"] == "4.0.1"
        assert sd["derivation"] == "constraint"
        assert sd["url"] == f"http://milan-fhir.org/fhir/StructureDefinition/{sd['id']}"
        elements = sd["differential"]["element"]
        assert elements and all(e["id"].split(".")[0].split(":")[0] == sd["type"] for e in elements)
    crit = next(sd for sd in sds if sd["url"] == fhir.CRITERION_RESULT_URL)
    slices = {e["sliceName"] for e in crit["differential"]["element"] if "sliceName" in e}
    assert slices == {"name", "status", "reason", "evidence", "missing"}
    caution = next(sd for sd in sds if sd["url"] == fhir.CAUTION_URL)
    slices = {e["sliceName"]: e for e in caution["differential"]["element"] if "sliceName" in e}
    assert set(slices) == {"code", "reason", "evidence"}
    assert (slices["code"]["min"], slices["reason"]["min"], slices["evidence"]["max"]) == (1, 1, "*")
    assert caution["context"] == [{"type": "element", "expression": "RiskAssessment.prediction.outcome"}]
    profile = next(sd for sd in sds if sd["url"] == fhir.PROFILE_URL)
    outcome_slices = {
        e["sliceName"]: e["type"][0]["profile"][0] for e in profile["differential"]["element"]
        if e["path"] == "RiskAssessment.prediction.outcome.extension" and "sliceName" in e
    }
    assert outcome_slices == {"criterionResult": fhir.CRITERION_RESULT_URL, "caution": fhir.CAUTION_URL}


def test_code_systems_cover_what_the_writer_uses(mappings):
    systems = {cs["url"]: cs for cs in fhir.code_systems()}
    for cs in systems.values():
        CodeSystem.model_validate(cs)
    verdicts = {c["code"]: c["display"] for c in systems[fhir.VERDICT_SYSTEM]["concept"]}
    assert {str(v) for v in Verdict} <= set(verdicts)
    from milan_fhir._writers._words import VERDICT_DISPLAY

    for v in Verdict:  # the coding's display is the CodeSystem's
        assert verdicts[str(v)] == VERDICT_DISPLAY[str(v)]
        ra = fhir.risk_assessment(evaluation(verdict=v), mappings)
        assert ra["prediction"][0]["outcome"]["coding"][0]["display"] == verdicts[str(v)]
    rule_sets = {c["code"] for c in systems[fhir.RULE_SET_SYSTEM]["concept"]}
    assert set(mappings.rule_sets) <= rule_sets


# ------------------------------------------------------------------------------------------------ cautions (v2)
def _cautions_of(ra):
    out = []
    for ext in _ext(ra["prediction"][0]["outcome"].get("extension"), fhir.CAUTION_URL):
        parts = {}
        for p in ext["extension"]:
            value = next(v for k, v in p.items() if k.startswith("value"))
            parts.setdefault(p["url"], []).append(value)
        out.append(parts)
    return out


def test_caution_extension_beside_the_criterion_results(mappings):
    ev = evaluation(record=full_record(), cautions=[CAUTIONS["other-malignancy"], CAUTIONS["deceased"]])
    ra = fhir.risk_assessment(ev, mappings)
    RiskAssessment.model_validate(ra)
    exts = ra["prediction"][0]["outcome"]["extension"]
    assert [e["url"] for e in exts] == [fhir.CRITERION_RESULT_URL] * 6 + [fhir.CAUTION_URL] * 2
    cautions = _cautions_of(ra)
    assert [c["code"] for c in cautions] == [["deceased"], ["other-malignancy"]]  # CAUTION_CODES order
    assert cautions[1]["reason"] == [CAUTIONS["other-malignancy"].reason]
    assert [r["reference"] for r in cautions[1]["evidence"]] == ["Condition/pc1/_history/1"]
    assert ra["prediction"][0]["outcome"]["coding"][0]["code"] == "ineligible"
    assert "deceased" in ra["prediction"][0]["outcome"]["text"].lower()
    assert "deceased (excludes)" in ra["prediction"][0]["rationale"]
    basis = [b["reference"] for b in ra["basis"]]
    assert "Condition/pc1/_history/1" in basis and len(basis) == len(set(basis))
    # a caution without evidence has no evidence part
    none = _cautions_of(fhir.risk_assessment(evaluation(cautions=[CAUTIONS["no-liver-metastasis-record"]]), mappings))
    assert none == [{"code": ["no-liver-metastasis-record"], "reason": [CAUTIONS["no-liver-metastasis-record"].reason]}]
    assert _cautions_of(fhir.risk_assessment(evaluation(), mappings)) == []


@pytest.mark.parametrize("code", ["deceased", "prior-liver-transplant", "no-liver-metastasis-record", "other-malignancy"])
def test_no_literature_with_an_excluding_or_capping_caution(mappings, code):
    rec = full_record()
    ra = fhir.risk_assessment(evaluation(record=rec, cautions=[CAUTIONS[code]]), mappings)
    assert ra["prediction"][0]["outcome"]["coding"][0]["code"] != "eligible"
    assert len(ra["prediction"]) == 1 and "mitigation" not in ra
    # even an Evaluation whose verdict says eligible beside such a caution (a caller's inconsistency) gets none
    forced = evaluation(record=rec, cautions=[CAUTIONS[code]], verdict=Verdict.ELIGIBLE)
    ra = fhir.risk_assessment(forced, mappings)
    assert len(ra["prediction"]) == 1 and "mitigation" not in ra
    assert "Literature context" not in ra["text"]["div"]


def test_prior_malignancy_keeps_the_literature_and_is_named_beside_it(mappings):
    ev = evaluation(record=full_record(), cautions=[CAUTIONS["prior-malignancy"]])
    assert ev.verdict == Verdict.ELIGIBLE
    ra = fhir.risk_assessment(ev, mappings)
    literature = ra["prediction"][1:]
    assert len(literature) == 7
    for p in literature:
        assert "prior-malignancy" in p["rationale"] and "Condition/bc1" in p["rationale"]
    assert "prior-malignancy" in ra["mitigation"]
    assert [c["code"] for c in _cautions_of(ra)] == [["prior-malignancy"]]
    assert "to weigh: prior malignancy" in ra["prediction"][0]["outcome"]["text"]
    # without the caution the same figures carry no such note
    plain = fhir.risk_assessment(evaluation(record=full_record()), mappings)
    assert all("prior-malignancy" not in p["rationale"] for p in plain["prediction"][1:])


def test_narrative_shows_the_cautions(mappings):
    ev = evaluation(cautions=[CAUTIONS["other-malignancy"], CAUTIONS["prior-malignancy"]])
    div = fhir.risk_assessment(ev, mappings)["text"]["div"]
    assert "Cautions (2)" in div
    assert "Other active malignancy" in div and "verdict at most indeterminate" in div
    assert "Prior malignancy" in div and "Condition/bc1/_history/1" in div
    assert div.index("Cautions (2)") < div.index("<th>Criterion</th>")
    assert "No cautions" in fhir.risk_assessment(evaluation(), mappings)["text"]["div"]
    eligible = fhir.risk_assessment(evaluation(record=full_record()), mappings)["text"]["div"]
    assert "Literature context" in eligible and "97.2 %" in eligible


def test_mitigation_cites_ruzzenente_and_maspero(mappings):
    m = fhir.risk_assessment(evaluation(record=full_record()), mappings)["mitigation"]
    assert "Ruzzenente" in m and "83 %" in m
    assert "Maspero" in m and "Am J Transplant 2022;22:2598-2607" in m
    assert "93 %" in m and "75 %" in m and "n=48" in m and "n=56" in m
    assert "maspero-2022" in mappings.studies


def test_g1_figure_only_when_g1_is_established(mappings):
    from milan_fhir._domain import GradeFact

    def g1_shown(rec, **kw):
        ra = fhir.risk_assessment(evaluation(record=rec, **kw), mappings)
        return any("G1" in p["outcome"]["text"] for p in ra["prediction"][1:])

    assert g1_shown(full_record(grade=1))  # an explicit G1 grade finding
    assert g1_shown(full_record(grade=2, ki67=None).model_copy(update={"grades": [], "ki67": []})) is False
    nos = full_record().model_copy(update={"grades": [GradeFact(
        grade=1, kind="morphology", label="Neuroendocrine tumour, NOS (ICD-O-3 8240/3)",
        source=src("Condition/prim", "2", "morphology 8240/3", dt.date(2024, 1, 5)))]})
    assert g1_shown(nos) is False  # a NOS morphology never makes G1
    ki_low = full_record().model_copy(update={"grades": []})
    from milan_fhir._domain import Ki67Fact
    ki_low = ki_low.model_copy(update={"ki67": [Ki67Fact(percent=2.0, source=src("Observation/k1", "3", "Ki-67 2 %"))]})
    assert g1_shown(ki_low)  # Ki-67 below 3 %
    bound = ki_low.model_copy(update={"ki67": [Ki67Fact(percent=5.0, comparator="<", source=src("Observation/k1"))]})
    assert g1_shown(bound) is False  # "<5 %" does not show below 3 %
    diagnosis = full_record().model_copy(update={"grades": [GradeFact(
        grade=1, kind="diagnosis", label="NET G1 (SNOMED 1286769009)", source=src("Condition/prim", "2"))]})
    assert g1_shown(diagnosis)


def test_g1_not_from_a_value_about_another_tumour_or_beside_an_unusable_one():
    from milan_fhir._domain import CriterionResult, Ignored, Unusable

    as_of = dt.date(2026, 1, 15)
    rec = full_record(grade=1)
    assert "grade_1" in subgroups(rec, as_of)
    about_other = rec.model_copy(update={"ignored": [Ignored(reference="Observation/g1", reason="about Condition/bc1, not the NET")]})
    assert "grade_1" not in subgroups(about_other, as_of)
    unreadable = rec.model_copy(update={"unusable": [Unusable(reference="Observation/k7", concept="ki67", field="valueString", reason="8-15%")]})
    assert "grade_1" not in subgroups(unreadable, as_of)
    # with the criterion results: only when low_grade is met on the G1 source
    met = CriterionResult(name="low_grade", status=Status.MET, reason="G1", evidence=(src("Observation/g1"),))
    other = CriterionResult(name="low_grade", status=Status.MET, reason="Ki-67", evidence=(src("Observation/k5"),))
    undecided = CriterionResult(name="low_grade", status=Status.INDETERMINATE, reason="?", evidence=(src("Observation/g1"),))
    assert "grade_1" in subgroups(rec, as_of, {"low_grade": met})
    assert "grade_1" not in subgroups(rec, as_of, {"low_grade": other})
    assert "grade_1" not in subgroups(rec, as_of, {"low_grade": undecided})
