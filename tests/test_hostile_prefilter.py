"""The cohort's raw-bytes prefilter is sound: it never drops a line the full parse would use (issue 9).

Property: for random NDJSON lines — every code of every mapping section (defaults and a layered local file),
under their own and other systems (aliases, OIDs, local URIs), with ICD spellings (no dot, lower case, ``+``
marks), Ki-67 / MIB-1 words in the code's text or display in any case, random key order and blanks, and JSON
escapes (``\\uXXXX``, ``\\/``) anywhere in any string — whenever ``adapt_resource`` on the parsed line yields
anything (facts, or a reported fault), ``RawPrefilter.wants(line)`` is True.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._adapters import RawPrefilter, adapt_resource
from milan_fhir._mappings import CODE_SECTIONS, default_mappings, load_mappings
from milan_fhir.errors import InputError

LOCAL = """\
mapping_set: {name: hostile-local, version: "1"}
ki67:
  - {system: "http://st-elsewhere.example/lab", code: "KI67.IHC/2", display: Ki-67 local, level: U, source: test}
liver_burden:
  - {system: "http://st-elsewhere.example/rad", code: "LB-1", display: burden local, level: U, source: test}
primary_resection:
  - {system: "http://st-elsewhere.example/proc", code: "5-455.41", display: colectomy local, level: U, source: test}
primary_net:
  - {system: "http://st-elsewhere.example/dx", code: "NET ileum", display: NET local, level: U, source: test}
"""

KI67_WORDS = ["Ki-67", "Ki67", "KI-67", "ki 67", "Ki\u201167", "MIB-1", "MIB1", "mib-1", "Ki-67 index", "MIB 1"]
SYSTEMS = ["urn:oid:2.16.840.1.113883.6.1", "urn:oid:2.16.840.1.113883.6.96", "http://hl7.org/fhir/sid/icd-10",
           "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "http://example.org/local", None]
TYPES = ["Observation", "Procedure", "Condition", "Patient", "Encounter", "MedicationRequest", "DiagnosticReport"]


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "local.yaml"
    path.write_text(LOCAL)
    return load_mappings(path)


def _all_codes(m) -> list[tuple[str, str]]:
    return [(e.system, e.code) for s in CODE_SECTIONS for e in m.codes_of(s)]


def _spellings(code: str, rnd: random.Random) -> str:
    choice = rnd.randrange(5)
    if choice == 1:
        return code.replace(".", "")
    if choice == 2:
        return code.lower()
    if choice == 3:
        return code + rnd.choice(["+", "*", "!", "\u2020", " "])
    return code


def _dumps(obj, rnd: random.Random, p_escape: float) -> str:
    """JSON text with keys in random order, random blanks and random escapes inside strings."""
    sp = rnd.choice(["", " "])
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return "{" + f",{sp}".join(f"{_dumps(k, rnd, p_escape)}:{sp}{_dumps(v, rnd, p_escape)}" for k, v in items) + "}"
    if isinstance(obj, list):
        return "[" + f",{sp}".join(_dumps(v, rnd, p_escape) for v in obj) + "]"
    if isinstance(obj, str):
        out = []
        for ch in obj:
            if ch == "/" and rnd.random() < p_escape:
                out.append("\\/")
            elif rnd.random() < p_escape:
                out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else json.dumps(ch)[1:-1])
            else:
                out.append(json.dumps(ch, ensure_ascii=False)[1:-1])
        return '"' + "".join(out) + '"'
    return json.dumps(obj)


def _resource(rnd: random.Random, codes: list[tuple[str, str]]) -> dict:
    rtype = rnd.choice(TYPES)
    res: dict = {"resourceType": rtype, "id": f"r{rnd.randrange(1000)}"}
    if rtype == "Patient":
        res["birthDate"] = "1970-01-01"
        return res
    system, code = rnd.choice(codes) if rnd.random() < 0.8 else (None, rnd.choice(["1234-5", "X99", "8302-2"]))
    if rnd.random() < 0.3:
        system = rnd.choice(SYSTEMS)
    coding = {"code": _spellings(code, rnd)}
    if system:
        coding["system"] = system
    cc: dict = {"coding": [coding]}
    if rnd.random() < 0.3:
        word = rnd.choice(KI67_WORDS)
        word = "".join(c.upper() if rnd.random() < 0.3 else c for c in word)
        where = rnd.choice(["text", "display"])
        if where == "text":
            cc["text"] = f"{rnd.choice(['', 'Proliferation '])}{word}"
        else:
            coding["display"] = word
        if rnd.random() < 0.5:  # the recognising code hidden: only the words are left
            coding["code"] = "LOCAL-1"
            coding["system"] = "http://example.org/local"
    res["code"] = cc
    res["subject"] = {"reference": "Patient/p1"}
    if rtype == "Observation":
        res |= {"status": "final", "effectiveDateTime": "2025-01-01",
                "valueQuantity": {"value": 5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    elif rtype == "Procedure":
        res |= {"status": "completed", "performedDateTime": "2024-01-01"}
    elif rtype == "Condition":
        res |= {"clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]}, "onsetDateTime": "2023-01-01"}
        if rnd.random() < 0.3:
            res["bodySite"] = [{"coding": [{"system": "http://snomed.info/sct", "code": rnd.choice(codes)[1]}]}]
    return res


def _used(obj, m) -> bool:
    try:
        return adapt_resource(obj, m) is not None
    except InputError:
        return True  # a reported fault is a use too: the prefilter must let it through to be reported


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), p_escape=st.sampled_from([0.0, 0.0, 0.05, 0.5]), local=st.booleans())
def test_prefilter_never_drops_a_used_line(layered, seed, p_escape, local):
    m = layered if local else default_mappings()
    rnd = random.Random(seed)
    obj = _resource(rnd, _all_codes(m))
    line = _dumps(obj, rnd, p_escape).encode("utf-8")
    assert json.loads(line) == obj
    if _used(obj, m):
        assert RawPrefilter(m).wants(line), line


def test_prefilter_still_drops_plain_noise():
    """The prefilter must stay a filter: irrelevant lines of a real export are dropped."""
    m = default_mappings()
    pf = RawPrefilter(m)
    noise = [
        {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/p"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
         "valueQuantity": {"value": 170, "unit": "cm"}},
        {"resourceType": "Encounter", "id": "e", "status": "finished"},
        {"resourceType": "Procedure", "id": "x", "status": "completed",
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "430193006"}]}},
    ]
    for obj in noise:
        assert not pf.wants(json.dumps(obj, separators=(",", ":")).encode())


@pytest.mark.parametrize("line", [
    b'{"resourceType":"Observation","code":{"coding":[{"code":"\\u0032\\u0039593-1"}]}}',
    b'{"resourceType":"Obs\\u0065rvation","code":{"coding":[{"code":"29593-1"}]}}',
    b'{"resourceType":"Observation","code":{"coding":[{"code":"x"}]},"resourceType":"Patient"}',
    b'{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p"}}]}',
    b'{"id":"c","resourceType":"Condition"}',
    b'\xef\xbb\xbf{"resourceType":"Condition"}',
    b'{"resourceType":"Observation","code":{"text":"mIb-1 index"}}',
])
def test_prefilter_keeps_the_hostile_spellings(line):
    assert RawPrefilter(default_mappings()).wants(line)
