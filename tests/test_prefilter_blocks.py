"""The cohort's block prefilter is sound (issue 13): it may hand on a line the adapters then drop, never drop one
the full parse would use.

Property: random NDJSON text — every code of the mappings (defaults and a layered local file with ICD-10 codes,
range and prefix patterns and Ki-67 names), under its own system, an alias (OIDs), an ICD-10 variant or another
system; ICD spellings (case, no dot, trailing marks, non-ASCII letters that read as ASCII in upper case); blanks
around codes (any Unicode blank); Ki-67 names in any case (Kelvin sign, dotted capital I) in texts and displays,
also in text-only codings; JSON escapes (``\\uXXXX``, ``\\/``) anywhere; random key order and spacing; Bundles on
one line; misshapen lines (cut, BOM, CRLF, blanks, non-objects) and lines over the size limit — is cut into
random read blocks and run through the cohort's own path (``_sources.line_blocks`` -> ``select_lines`` ->
``RawPrefilter.lines``). Every line the full parse uses (``line_resources`` + ``adapt_resource`` give facts or a
fault) and every misshapen line (to be reported) must be handed on, with its right line number.
"""

from __future__ import annotations

import json
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._adapters import RawPrefilter, adapt_resource
from milan_fhir._adapters._observation import CONCEPTS as OBSERVATION_CONCEPTS
from milan_fhir._adapters._prefilter import ENGINES, LOWER_TO_ASCII, UNICODE_BLANKS, UPPER_TO_ASCII
from milan_fhir._adapters._procedure import CONCEPTS as PROCEDURE_CONCEPTS
from milan_fhir._cohort._work import LineScan, select_lines
from milan_fhir._mappings import CODE_SECTIONS, default_mappings, load_mappings
from milan_fhir._sources import Limits, Oversize, clean_line, line_blocks, line_resources
from milan_fhir.errors import InputError

LOCAL = """\
mapping_set: {name: blocks-local, version: "1"}
ki67:
  - {system: "http://st-elsewhere.example/lab", code: "KI67.IHC/2", display: Ki-67 local, level: U, source: test}
  - {system: "http://hl7.org/fhir/sid/icd-10-cm", code: "S36.1F", display: odd ICD Ki-67, level: U, source: test}
liver_burden:
  - {system: "http://fhir.de/CodeSystem/bfarm/icd-10-gm", code: "FI9.9", display: odd GM code, level: U,
     source: test}
primary_resection:
  - {system: "http://st-elsewhere.example/ops", code: "99910-99919", match: range, display: local resections,
     sites: [ileum], level: U, source: local catalogue}
  - {system: "http://st-elsewhere.example/ops", code: "LR-", match: prefix, display: local resections,
     sites: [ileum], level: U, source: local catalogue}
text_nets:
  ki67_names: [proliferationsindex, wachstumsmarkeri]
"""

TYPES = ["Observation", "Procedure", "Condition", "Patient", "Encounter", "MedicationRequest", "DiagnosticReport"]
OTHER_SYSTEMS = ["http://example.org/local", "http://loinc.org", "http://snomed.info/sct", None]
EXOTIC = {"I": "\u0131", "S": "\u017f", "FI": "\ufb01", "SS": "\xdf", "ST": "\ufb05", "FF": "\ufb00"}
_SECTIONS_OF = {"Observation": OBSERVATION_CONCEPTS, "Procedure": PROCEDURE_CONCEPTS}
MARKS = ["+", "*", "!", "\u2020", " ", "\xa0"]


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "local.yaml"
    path.write_text(LOCAL)
    return load_mappings(path)


def _codes(m, sections=CODE_SECTIONS) -> list[tuple[str, str]]:
    """(system, code) of every exact entry, and a code under every pattern entry, of ``sections``."""
    out = [(e.system, e.code) for s in sections for e in m.codes_of(s)]
    for s in sections:
        for e in m.patterns_of(s):
            if e.match == "range":
                lo, _, hi = e.code.partition("-")
                out += [(e.system, lo), (e.system, hi)]
            elif e.match == "prefix":
                out += [(e.system, e.code), (e.system, e.code + "12")]
            else:
                out.append((e.system, "8" + e.code))
    return out


def _systems(m, system: str) -> list[str]:
    """The system, its aliases, and the ICD-10 variants sharing it."""
    out = [system] + [a for a, s in m.system_aliases.items() if s == system]
    out += [v for v, var in m.icd10_variants.items() if var.shares == system]
    return out


def _spell(code: str, rnd: random.Random) -> str:
    for _ in range(rnd.randrange(3)):
        choice = rnd.randrange(7)
        if choice == 0:
            code = code.replace(".", "")
        elif choice == 1:
            code = "".join(c.lower() if rnd.random() < 0.5 else c for c in code)
        elif choice == 2:
            code += rnd.choice(MARKS)
        elif choice == 3:
            code = rnd.choice(UNICODE_BLANKS) * rnd.randrange(1, 3) + code
        elif choice == 4:
            code += rnd.choice(UNICODE_BLANKS)
        elif choice == 5:
            for plain, odd in EXOTIC.items():
                if plain in code.upper() and rnd.random() < 0.7:
                    i = code.upper().index(plain)
                    code = code[:i] + odd + code[i + len(plain):]
        else:
            code = code + rnd.choice(["", "0", "12", ".9"])
    return code


def _name(m, rnd: random.Random) -> str:
    names = list(m.text_nets.ki67_names) + ["Ki 67", "MIB 1", "ki\u201167"]
    name = rnd.choice(names)
    out = []
    for i, c in enumerate(name):
        r = rnd.random()
        if c == "k" and r < 0.2:
            out.append("\u212a")
        elif c == "i" and i == len(name) - 1 and r < 0.3:
            out.append("\u0130")
        elif r < 0.5:
            out.append(c.upper())
        else:
            out.append(c)
    return rnd.choice(["", "Proliferation ", "Tumour "]) + "".join(out) + rnd.choice(["", " index", " (IHC)"])


def _resource(m, rnd: random.Random, codes: list[tuple[str, str]]) -> dict:
    rtype = rnd.choice(TYPES)
    res: dict = {"resourceType": rtype, "id": f"r{rnd.randrange(10**6)}"}
    if rtype == "Patient":
        res["birthDate"] = "1970-01-01"
        return res
    r = rnd.random()
    own = _codes(m, _SECTIONS_OF.get(rtype, CODE_SECTIONS))  # the codes its type is recognised by
    if r < 0.25:  # codes with letters (ICD-10 systems: case, dots, marks and odd letters matter)
        system, code = rnd.choice([c for c in own if any(ch.isalpha() for ch in c[1])] or own)
    elif r < 0.5:
        system, code = rnd.choice(own)
    elif r < 0.75:
        system, code = rnd.choice(codes)
    else:
        system, code = None, rnd.choice(["1234-5", "X99", "8302-2"])
    if system is not None and rnd.random() < 0.5:
        system = rnd.choice(_systems(m, system))
    if rnd.random() < 0.2:
        system = rnd.choice(OTHER_SYSTEMS)
    coding: dict = {"code": _spell(code, rnd)}
    if system:
        coding["system"] = system
    cc: dict = {"coding": [coding]}
    if rnd.random() < 0.3:
        if rnd.random() < 0.5:
            cc["text"] = _name(m, rnd)
        else:
            coding["display"] = _name(m, rnd)
        if rnd.random() < 0.5:  # a text-only coding: only the name is left
            del coding["code"]
            coding.pop("system", None)
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
    return res


def _dumps(obj, rnd: random.Random, p_escape: float, sp: str, colon: str) -> str:
    """JSON text with keys in random order, the given spacing and random escapes inside strings."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        inner = ("," + sp).join(f"{_dumps(k, rnd, p_escape, sp, colon)}{colon}{_dumps(v, rnd, p_escape, sp, colon)}"
                                for k, v in items)
        return "{" + inner + "}"
    if isinstance(obj, list):
        return "[" + ("," + sp).join(_dumps(v, rnd, p_escape, sp, colon) for v in obj) + "]"
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


def _line(m, rnd: random.Random, codes, p_escape: float) -> bytes:
    kind = rnd.random()
    sp, colon = rnd.choice([("", ":"), ("", ":"), (" ", ": "), (" ", " : ")])
    if kind < 0.08:
        entries = [{"fullUrl": f"urn:uuid:{i}", "resource": _resource(m, rnd, codes)} for i in range(rnd.randrange(1, 3))]
        obj = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    else:
        obj = _resource(m, rnd, codes)
    text = _dumps(obj, rnd, p_escape, sp, colon).encode("utf-8")
    damage = rnd.random()
    if damage < 0.03:
        return text[: rnd.randrange(1, len(text))]  # cut
    if damage < 0.05:
        return b"\xef\xbb\xbf" + text
    if damage < 0.07:
        return text + b"\r"
    if damage < 0.09:
        return b"  " + text + b" "
    if damage < 0.10:
        return rnd.choice([b"x", b"]", b"\xef\xbb\xbfx"]) + text
    if damage < 0.11:
        return rnd.choice([b"", b"   ", b"[1, 2]", b'"x"', b'{"a": 1}', b"\xef\xbb\xbf", b"null"])
    return text


def _used(line: bytes, m, limits: Limits) -> bool:
    """Whether the full parse uses the line: a resource of it gives facts or a fault (a fault is a use: it must be
    reported), or it is a line to report (over the limit, or not one JSON object on one line)."""
    if len(line) > limits.max_line_bytes:
        return True
    clean = clean_line(line)
    if not clean:
        return False
    problems: list = []
    located = list(line_resources(clean, "f", 1, problems, limits))
    if problems and not (clean[:1] == b"{" and clean[-1:] == b"}"):
        return True
    for loc in located:
        try:
            if adapt_resource(loc.resource, m, located=loc) is not None:
                return True
        except InputError:
            return True
    return False


def _select(text: bytes, pf: RawPrefilter, limits: Limits, rnd: random.Random) -> tuple[dict[int, bytes], int]:
    """The cohort's path over ``text`` read in random blocks: {line number: line handed on}, lines seen."""
    blocks, i = [], 0
    while i < len(text):
        n = rnd.choice([1, 7, 64, 500, 4096, 1 << 20])
        blocks.append(text[i:i + n])
        i += n
    scan = LineScan()
    handed = {}
    for number, line, _wanted in select_lines(line_blocks(blocks, limits.max_line_bytes), pf, scan):
        assert number not in handed
        handed[number] = line
    return handed, scan.lines


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), p_escape=st.sampled_from([0.0, 0.0, 0.02, 0.3]), local=st.booleans(),
       small_limit=st.booleans(), trailing_newline=st.booleans())
def test_block_scan_hands_on_every_line_the_full_parse_uses(layered, seed, p_escape, local, small_limit,
                                                            trailing_newline):
    m = layered if local else default_mappings()
    rnd = random.Random(seed)
    codes = _codes(m)
    lines = [_line(m, rnd, codes, p_escape) for _ in range(rnd.randrange(1, 40))]
    limits = Limits(max_line_bytes=700) if small_limit else Limits()
    text = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    # both engines (Hyperscan, Aho-Corasick), each over its own random read blocks; they may differ only in the
    # lines they hand on that nothing uses (the Aho-Corasick engine cuts a long caseless needle to its head)
    for i, engine in enumerate(ENGINES):
        handed, seen = _select(text, RawPrefilter(m, engine=engine), limits, random.Random(seed + i))
        expected_lines = text.count(b"\n") + (0 if text.endswith(b"\n") or not text else 1)
        assert seen == expected_lines
        for number, line in enumerate(lines, 1):
            if _used(line, m, limits):
                assert number in handed, (engine, number, line)
            if number in handed:
                got = handed[number]
                if len(line) > limits.max_line_bytes:
                    assert isinstance(got, Oversize) and got.size == len(line)
                else:
                    assert got == clean_line(line), (engine, number, got, line)
        assert set(handed) <= set(range(1, len(lines) + 1))


@pytest.mark.parametrize("engine", ENGINES)
def test_block_scan_picks_only_the_lines_with_a_needle(engine):
    """It stays a filter: over a block of plain noise with a few used lines, exactly those are handed on."""
    m = default_mappings()
    noise = [
        {"resourceType": "Observation", "id": f"o{i}", "status": "final", "subject": {"reference": "Patient/p"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
         "valueQuantity": {"value": 170, "unit": "cm"}} for i in range(50)
    ] + [{"resourceType": "Encounter", "id": f"e{i}", "status": "finished"} for i in range(50)]
    used = {7: {"resourceType": "Observation", "id": "k", "status": "final", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]}},
            60: {"resourceType": "Patient", "id": "p"},
            99: {"resourceType": "Observation", "id": "t", "code": {"text": "KI-67 labelling"}}}
    rows = list(noise)
    for at, res in sorted(used.items()):
        rows.insert(at - 1, res)
    text = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)
    scan = LineScan()
    handed = [n for n, _line, _w in select_lines(line_blocks([text], 1 << 20), RawPrefilter(m, engine=engine), scan)]
    assert handed == sorted(used)
    assert scan.lines == len(rows) and scan.fhir


def test_unicode_tables_match_this_python():
    """The blanks ``str.strip`` removes and the letters whose case maps to ASCII, as the running Python has them
    (the needles rest on these tables)."""
    chars = [chr(c) for c in range(sys.maxunicode + 1)]
    assert set(UNICODE_BLANKS) == {c for c in chars if c.isspace() and ord(c) >= 0x20}
    assert set(UPPER_TO_ASCII) == {c for c in chars if ord(c) > 127 and any(ord(x) < 128 for x in c.upper())}
    assert set(LOWER_TO_ASCII) == {c for c in chars if ord(c) > 127 and any(ord(x) < 128 for x in c.lower())}
    # and a code is compared stripped: the control blanks are never raw in a JSON string
    assert all(ord(c) < 0x20 for c in chars[:0x21] if c.isspace() and c != " ")


def _obs(value: str, system: str = "http://hl7.org/fhir/sid/icd-10-cm", **more) -> dict:
    return {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2025-01-01", "code": {"coding": [{"system": system, "code": value}]},
            "valueString": "5 %"} | more


@pytest.mark.parametrize("resource", [
    _obs("\u017f36.1F"),  # long s: upper() is S
    _obs("s36.1f"),  # lower case
    _obs("S361F"),  # no dot
    _obs("\u3000S36.1F"),  # an ideographic blank before the code
    _obs("\ufb019.9", system="http://fhir.de/CodeSystem/bfarm/icd-10-gm"),  # the fi ligature: upper() is FI
    _obs("\u0131\u0131", code={"text": "Wachstumsmarker\u0130"}),  # a Ki-67 name ending in a dotted capital I
    _obs("x", code={"text": "\u212ai-67"}),  # the Kelvin sign: lower() is k
], ids=["long-s", "lower", "no-dot", "ideographic-blank", "fi-ligature", "dotted-I", "kelvin"])
@pytest.mark.parametrize("engine", ENGINES)
def test_odd_spellings_the_adapters_read_are_kept(layered, resource, engine):
    line = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert _used(line, layered, Limits()), "the adapters read this spelling (else the case proves nothing)"
    pf = RawPrefilter(layered, engine=engine)
    assert pf.wants(line)
    for block in ([line + b"\n"], [b'{"resourceType":"Encounter"}\n' + line + b"\n"]):
        picked = [n for n, _l, _w in select_lines(line_blocks(block, 1 << 20), pf, LineScan())]
        assert picked == [len(block[0].split(b"\n")) - 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_misshapen_first_line_of_a_read_block_is_reported(layered, engine):
    """The first line of a run has no newline before it: it is looked at even without a needle."""
    text = b'x{"resourceType":"Encounter"}\n{"resourceType":"Encounter"}\n'
    for cut in range(1, len(text)):
        handed = [n for n, _l, _w in select_lines(line_blocks([text[:cut], text[cut:]], 1 << 20),
                                                  RawPrefilter(layered, engine=engine), LineScan())]
        assert handed == [1], cut
