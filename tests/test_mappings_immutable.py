"""The object ``default_mappings()`` returns is shared by every evaluation of the process: no caller can change
it (read-only tables, tuples, frozen entries), so an attempt to change it leaves later evaluations as they were.
Layering builds new objects; pickling (worker processes) keeps the data and the read-only form."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pydantic
import pytest

import milan_fhir
from milan_fhir import default_mappings, load_mappings

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "01-ileal-net-eligible.json"
AS_OF = "2026-06-30"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def _results() -> list[dict]:
    return [milan_fhir.to_json(ev) for ev in milan_fhir.evaluate(FIXTURE, as_of=AS_OF)]


def _attempts(m):
    """Ways a caller might try to change the shared mappings (each must fail)."""
    rules = m.rule_set("milan-net")
    yield "rule set replaced", lambda: m.rule_sets.__setitem__("milan-net", rules.model_copy(update={"age_max_years": 99}))
    yield "rule set removed", lambda: m.rule_sets.pop("milan-2007")
    yield "rule set changed", lambda: setattr(rules, "age_max_years", 99)
    yield "code added", lambda: m.codes["metastasis"].append(m.codes["metastasis"][0])
    yield "codes section dropped", lambda: m.codes.clear()
    yield "code entry changed", lambda: setattr(m.codes["ki67"][0], "code", "0000-0")
    yield "site redefined", lambda: m.sites.__setitem__("liver", m.sites["lung"])
    yield "default rule set switched", lambda: setattr(m, "default_rule_set", "milan-2007")
    yield "systems changed", lambda: m.systems.update({"icd10cm": "urn:x"})
    yield "alias added", lambda: m.system_aliases.__setitem__("urn:x", ICD)
    yield "text net widened", lambda: setattr(m.text_nets, "ki67_names", ("anything",))
    yield "prediction dropped", lambda: m.predictions.pop()
    yield "mitigation replaced", lambda: setattr(m, "mitigation", "")
    yield "files rewritten", lambda: m.files.append("x.yaml")


def test_the_shared_mappings_cannot_be_changed_and_later_evaluations_are_unaffected():
    m = default_mappings()
    before = _results()
    fingerprint = m.fingerprint()
    attempts = list(_attempts(m))
    assert len(attempts) == 14
    for what, attempt in attempts:
        with pytest.raises((TypeError, AttributeError, dataclasses.FrozenInstanceError, pydantic.ValidationError)):
            attempt()
        assert default_mappings() is m, what
    assert m.fingerprint() == fingerprint
    assert m.rule_set("milan-net").age_max_years == 60 and m.default_rule_set == "milan-net"
    assert _results() == before
    # and the same as from mappings loaded afresh
    fresh = [milan_fhir.to_json(ev) for ev in milan_fhir.evaluate(FIXTURE, as_of=AS_OF, mappings=load_mappings())]
    assert fresh == before


def test_a_table_given_to_the_constructor_is_copied():
    sites = dict(default_mappings().sites)
    m = milan_fhir.Mappings(sites=sites, rule_sets=dict(default_mappings().rule_sets))
    sites.clear()
    assert "liver" in m.sites


def test_layering_builds_a_new_object_and_leaves_the_defaults_alone(tmp_path):
    layer = tmp_path / "local.yaml"
    layer.write_text(
        "mapping_set: {name: local, version: '1'}\n"
        "rule_sets:\n  milan-net: {age_max_years: 65}\n  strict: {version: '1', title: strict, source: here,"
        " age_max_years: 55, low_grade_mode: ki67, ki67_limit_percent: 5, grade_ki67_cutoffs: [3, 20],"
        " liver_burden_limit_percent: 50, liver_burden_inclusive: false, stable_months: 6, status_stale_months: 6,"
        " staging_window_months: 6}\n"
    )
    layered = load_mappings(layer)
    base = default_mappings()
    assert layered is not base
    assert layered.rule_set("milan-net").age_max_years == 65 and "strict" in layered.rule_sets
    assert base.rule_set("milan-net").age_max_years == 60 and "strict" not in base.rule_sets
    assert layered.version == base.version + "+local@1"


def test_pickled_mappings_keep_their_data_and_stay_read_only():
    m = default_mappings()
    copy = pickle.loads(pickle.dumps(m))
    assert copy is not m and copy.fingerprint() == m.fingerprint() and copy.version == m.version
    assert copy.match("metastasis", ICD, "C78.7") == m.match("metastasis", ICD, "C78.7")
    with pytest.raises(TypeError):
        copy.rule_sets["x"] = m.rule_set()  # type: ignore[index]
