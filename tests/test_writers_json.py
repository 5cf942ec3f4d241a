"""The JSON line contract of criteria.md §6."""

from __future__ import annotations

import io

import orjson

from milan_fhir._domain import CRITERIA, Status
from milan_fhir._writers import json_lines

from _writer_samples import CAUTIONS, evaluation

CONTRACT_KEYS = {"patient", "as_of", "rule_set", "verdict", "cautions", "criteria", "ignored", "unusable"}
EXTRA_KEYS = {"rule_set_version", "mapping_version"}
CRITERION_KEYS = {"status", "reason", "evidence", "missing", "evidence_detail"}


def test_exact_keys_and_values():
    ev = evaluation(statuses={"stable_disease": Status.INDETERMINATE})
    obj = json_lines.to_json(ev)
    assert set(obj) == CONTRACT_KEYS | EXTRA_KEYS
    assert obj["patient"] == "Patient/p1"
    assert obj["as_of"] == "2026-01-15"
    assert obj["rule_set"] == "milan-net"
    assert obj["verdict"] == "indeterminate"
    assert list(obj["criteria"]) == list(CRITERIA)
    for name, crit in obj["criteria"].items():
        assert set(crit) == CRITERION_KEYS, name
        assert crit["status"] in {"met", "not_met", "indeterminate"}
        assert isinstance(crit["reason"], str) and crit["reason"]
        assert all(isinstance(e, str) and "/" in e for e in crit["evidence"])
        assert isinstance(crit["missing"], list)
    assert obj["criteria"]["stable_disease"]["missing"] == ["a recent measurement"]
    assert obj["criteria"]["stable_disease"]["evidence"] == []


def test_evidence_is_type_id_deduplicated_in_order_with_detail_beside():
    obj = json_lines.to_json(evaluation())
    low = obj["criteria"]["low_grade"]
    assert low["evidence"] == ["Observation/k1"]  # cited twice, listed once, without version
    assert low["evidence_detail"] == [
        {"reference": "Observation/k1", "version": "3", "value": "Ki-67 2 %", "date": "2025-03-01"}
    ]
    prim = obj["criteria"]["primary_resected_portal"]
    assert prim["evidence"] == ["Condition/prim", "Procedure/res"]
    assert prim["evidence_detail"][1]["version"] is None


def test_ignored_unusable_and_versions():
    obj = json_lines.to_json(evaluation())
    assert obj["rule_set_version"] == "1.0.0"
    assert obj["mapping_version"] == "milan-fhir-default@0.1.0"
    assert obj["ignored"] == [{"reference": "Observation/old", "why": "status preliminary"}]
    assert obj["unusable"] == [
        {"reference": "Observation/k9", "field": "valueString", "why": "no % sign", "concept": "ki67"}
    ]


def test_cautions_always_present_even_when_empty():
    obj = json_lines.to_json(evaluation())
    assert obj["cautions"] == []
    assert list(obj)[:6] == ["patient", "as_of", "rule_set", "verdict", "cautions", "criteria"]


def test_cautions_shape_order_and_evidence():
    ev = evaluation(cautions=[CAUTIONS["prior-malignancy"], CAUTIONS["other-malignancy"], CAUTIONS["deceased"]])
    obj = json_lines.to_json(ev)
    assert obj["verdict"] == "ineligible"  # deceased excludes although every criterion is met
    assert [c["code"] for c in obj["cautions"]] == ["deceased", "other-malignancy", "prior-malignancy"]
    for c in obj["cautions"]:
        assert set(c) == {"code", "reason", "evidence", "evidence_detail"}
        assert isinstance(c["reason"], str) and c["reason"]
    assert obj["cautions"][1] == {
        "code": "other-malignancy",
        "reason": CAUTIONS["other-malignancy"].reason,
        "evidence": ["Condition/pc1"],
        "evidence_detail": [
            {"reference": "Condition/pc1", "version": "1", "value": "prostate adenocarcinoma", "date": "2024-06-01"}
        ],
    }
    no_record = json_lines.to_json(evaluation(cautions=[CAUTIONS["no-liver-metastasis-record"]]))
    assert no_record["cautions"][0]["evidence"] == [] and no_record["verdict"] == "indeterminate"


def test_every_line_of_a_stream_has_cautions_ignored_and_unusable():
    buf = io.BytesIO()
    json_lines.write_lines([evaluation(patient="Patient/a"), evaluation(cautions=[CAUTIONS["deceased"]])], buf)
    for line in buf.getvalue().splitlines():
        obj = orjson.loads(line)
        assert isinstance(obj["cautions"], list)
        assert isinstance(obj["ignored"], list) and isinstance(obj["unusable"], list)


def test_one_object_per_line():
    buf = io.BytesIO()
    n = json_lines.write_lines([evaluation(patient="Patient/a"), evaluation(patient="Patient/b")], buf)
    lines = buf.getvalue().splitlines()
    assert n == 2 and len(lines) == 2
    assert [orjson.loads(line)["patient"] for line in lines] == ["Patient/a", "Patient/b"]
