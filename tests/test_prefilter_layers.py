"""The cohort's raw-bytes prefilter stays sound for what a hospital layers: code patterns and Ki-67 names."""

from __future__ import annotations

import json
from pathlib import Path

from milan_fhir._adapters import adapt_resource
from milan_fhir._adapters._prefilter import RawPrefilter
from milan_fhir._mappings import default_mappings, load_mappings

LAYER = """
mapping_set: {name: st-elsewhere, version: "1"}
primary_resection:
  - {system: "http://st-elsewhere.example/ops", code: "99910-99919", match: range, display: local resections,
     sites: [ileum], level: U, source: local catalogue}
liver_transplant:
  - {system: "http://st-elsewhere.example/ops", code: "X", match: prefix, display: local transplant codes,
     level: U, source: local catalogue}
text_nets:
  ki67_names: [proliferationsindex]
"""


def _line(resource: dict) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode()


def test_layered_range_prefix_and_ki67_name_keep_their_lines(tmp_path: Path):
    layer = tmp_path / "local.yaml"
    layer.write_text(LAYER)
    m = load_mappings(layer)
    pre = RawPrefilter(m)
    proc = {"resourceType": "Procedure", "id": "p1", "status": "completed", "subject": {"reference": "Patient/a"},
            "performedDateTime": "2024-01-01",
            "code": {"coding": [{"system": "http://st-elsewhere.example/ops", "code": "99915"}]}}
    assert adapt_resource(proc, m) is not None  # the adapters use it ...
    assert pre.wants(_line(proc))  # ... so the prefilter must keep it
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/a"},
           "effectiveDateTime": "2024-01-01",
           "code": {"coding": [{"system": "http://st-elsewhere.example/lab", "code": "PX"}],
                    "text": "Proliferationsindex"},
           "valueString": "5 %"}
    assert pre.wants(_line(obs))
    # the defaults alone drop both (nothing of theirs names these codes or words): the layer made the difference
    base = RawPrefilter(default_mappings())
    assert not base.wants(_line(proc))
    assert not base.wants(_line(obs))


def test_a_pattern_with_no_common_head_keeps_every_observation_and_procedure(tmp_path: Path):
    layer = tmp_path / "local.yaml"
    layer.write_text(LAYER.replace('code: "X", match: prefix', 'code: "/9", match: suffix'))
    pre = RawPrefilter(load_mappings(layer))
    other = {"resourceType": "Procedure", "id": "p2", "code": {"coding": [{"system": "x", "code": "12"}]}}
    assert pre.wants(_line(other))
    assert not pre.wants(_line({"resourceType": "Encounter", "id": "e1"}))
