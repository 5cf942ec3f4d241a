"""The JSON line contract of criteria.md §6."""

from __future__ import annotations

import io

import orjson

from milan_fhir._domain import CRITERIA, Status
from milan_fhir._writers import json_lines

from _writer_samples import evaluation

CONTRACT_KEYS = {"patient", "as_of", "rule_set", "verdict", "criteria"}
EXTRA_KEYS = {"rule_set_version", "mapping_version", "ignored", "unusable"}
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
    assert obj["ignored"] == [{"reference": "Observation/old", "reason": "status preliminary"}]
    assert obj["unusable"] == [
        {"reference": "Observation/k9", "concept": "ki67", "field": "valueString", "reason": "no % sign"}
    ]


def test_one_object_per_line():
    buf = io.BytesIO()
    n = json_lines.write_lines([evaluation(patient="Patient/a"), evaluation(patient="Patient/b")], buf)
    lines = buf.getvalue().splitlines()
    assert n == 2 and len(lines) == 2
    assert [orjson.loads(line)["patient"] for line in lines] == ["Patient/a", "Patient/b"]
