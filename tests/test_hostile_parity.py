"""Hypothesis: hostile NDJSON lines and Bundles never raise, never vanish unreported, and ``evaluate`` and
``cohort --all-patients`` give identical results on them (issue 9). Also the public-style data sets: a
Synthea-like Bulk export folder with ``log.ndjson`` and ``manifest.json``, and pretty-printed Bundles."""

from __future__ import annotations

import copy
import gzip
import json
import random
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
import corpus  # noqa: E402

import milan_fhir  # noqa: E402
from milan_fhir._adapters import build_records, classify  # noqa: E402
from milan_fhir._adapters._located import resource_key  # noqa: E402
from milan_fhir._cohort import run_cohort  # noqa: E402
from milan_fhir._mappings import default_mappings  # noqa: E402
from milan_fhir._adapters import RawPrefilter  # noqa: E402
from milan_fhir._sources import clean_line, read_path  # noqa: E402

AS_OF = corpus.AS_OF


def _patient(n: int) -> list[dict]:
    text = json.dumps(corpus.vignette()).replace("v01-p1", f"h{n}")
    return json.loads(text)


def _deep(depth: int) -> dict:
    node: dict = {"url": "http://x.org/e", "valueString": "v"}
    for _ in range(depth):
        node = {"url": "http://x.org/e", "extension": [node]}
    return node


def _mutate(res: dict, rnd: random.Random) -> dict:
    r = copy.deepcopy(res)
    kind = rnd.randrange(14)
    date_field = {"Observation": "effectiveDateTime", "Procedure": "performedDateTime",
                  "Condition": "onsetDateTime", "Patient": "birthDate"}.get(r["resourceType"], "id")
    if kind == 0:
        r[date_field] = rnd.choice([5, None, True, [], {}, "x", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-12:00",
                                    "2024-02-30", "2024-06-01T25:00:00Z"])
    elif kind == 1:
        r["id"] = r.get("id", "x") + rnd.choice(["\t", "\n", "\x00", "\x1b[2J", "\u2028", " "])
    elif kind == 2 and isinstance(r.get("subject"), dict):
        r["subject"] = {"reference": rnd.choice(["Patient/h0\nx", "Patient/", "", "urn:uuid:missing", "Group/g",
                                                 "Patient/h0\t", 5])}
    elif kind == 3:
        r["extension"] = [_deep(rnd.choice([10, 70, 300]))]
    elif kind == 4:
        r["status"] = rnd.choice([None, 5, "entered-in-error", "preliminary", ["final"]])
    elif kind == 5 and r["resourceType"] == "Observation":
        r["valueQuantity"] = rnd.choice([{"value": "x"}, {"value": 1e308, "unit": "%"}, "5%", None, {"value": -3, "unit": "%"}])
    elif kind == 6:
        r.pop("id", None)
    elif kind == 7:
        r["effectivePeriod"] = rnd.choice(["x", {"start": 5}, {"start": "0001-01-01T00:00:00+01:00"}, []])
    elif kind == 8:
        r["meta"] = rnd.choice([{"versionId": 3}, "x", {"versionId": "2\n"}])
    elif kind == 9:
        r["code"] = rnd.choice([None, "29593-1", {"coding": "x"}, {"coding": [None, 5, {"code": 29593}]}])
    return r


def _line(obj: dict, rnd: random.Random) -> bytes:
    text = json.dumps(obj, separators=(",", ":"))
    if rnd.random() < 0.2:  # escape the codes and the type
        text = text.replace('"29593-1"', '"\\u0032\\u0039593-1"').replace('"Observation"', '"Obs\\u0065rvation"')
    return text.encode()


def _build(folder: Path, rnd: random.Random) -> None:
    folder.mkdir()
    patients = [_patient(i) for i in range(rnd.randint(1, 3))]
    lines: list[bytes] = []
    bundles: list[list[dict]] = []
    for res in patients:
        group: list[dict] = []
        for r in res:
            if rnd.random() < 0.25:
                r = _mutate(r, rnd)
            (group if rnd.random() < 0.3 else lines).append(r)
        if group:
            bundles.append(group)
    out: list[bytes] = []
    for r in lines:
        out.append(_line(r, rnd))
        if rnd.random() < 0.05:
            out.append(rnd.choice([b"", b"   ", b"{not json", b"[1,2]", b'"x"', b"\x00", b'{"a":1}', b"\xff\xfe"]))
    if bundles and rnd.random() < 0.5:  # one Bundle on one NDJSON line, with urn:uuid references
        group = bundles.pop()
        entries = [{"fullUrl": f"urn:uuid:{r.get('id', 'x')}", "resource": r} for r in group]
        out.append(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode())
    data = b"\n".join(out) + b"\n"
    if rnd.random() < 0.3:
        data = b"\xef\xbb\xbf" + data
    if rnd.random() < 0.3:
        data = data.replace(b"\n", b"\r\n")
    name = rnd.choice(["data.ndjson", "data.jsonl", "export-1"])
    if rnd.random() < 0.3:
        (folder / (name + ".gz")).write_bytes(gzip.compress(data))
    else:
        (folder / name).write_bytes(data)
    for i, group in enumerate(bundles):  # pretty Bundles in the same folder
        (folder / f"bundle-{i}.json").write_bytes(corpus.pretty_bundle(group, full_urls=rnd.random() < 0.5))


def _relevant(folder: Path, m) -> list[tuple[str, int, str | None]]:
    """(file, line, Type/id) of every resource the rules would read, by our own reading of the files."""
    out = []
    problems: list = []
    for loc in read_path(folder, problems):
        if isinstance(loc.resource, dict) and classify(loc.resource, m) is not None:
            out.append((loc.file, loc.line, resource_key(loc.resource, loc.full_url)))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_hostile_inputs_same_results_nothing_unreported(tmp_path_factory, seed):
    rnd = random.Random(seed)
    base = tmp_path_factory.mktemp("case")
    folder = base / "in"
    _build(folder, rnd)
    m = default_mappings()
    problems: list = []
    try:
        evaluated = milan_fhir.evaluate(folder, as_of=AS_OF, problems=problems)
    except milan_fhir.errors.InputError:
        evaluated = None  # nothing readable at all: allowed, but then the cohort finds nothing either
    summary = run_cohort(folder, base / "out", as_of=AS_OF, workers=1, all_patients=True)
    cohort = [orjson.loads(x) for x in (base / "out" / "results.ndjson").read_bytes().splitlines()]
    if evaluated is None:
        assert cohort == []
        return
    assert cohort == [milan_fhir.to_json(ev) for ev in evaluated]
    # nothing dropped without a report: every resource the rules read is counted, ignored, unusable or reported
    records = build_records(read_path(folder, []), m, [])
    seen = set()
    for rec in records.values():
        seen |= set(rec.inputs) | {i.reference for i in rec.ignored} | {u.reference for u in rec.unusable}
    reported = {(p.file, p.line) for p in problems}
    for file, line, ref in _relevant(folder, m):
        assert ref in seen or (file, line) in reported, (file, line, ref, problems)
    # the cohort reports the same problems, except about lines its prefilter passes over unparsed (a line shaped
    # like one JSON object that names no rule-relevant type or code: it could not be used, whatever it holds)
    cohort_errors = {(e["file"], e["line"]) for e in
                     (orjson.loads(x) for x in (base / "out" / "errors.ndjson").read_bytes().splitlines())}
    prefilter = RawPrefilter(m)
    for p in problems:
        if p.line is None or not p.file or _sniff_kind(p.file) != "lines":
            assert (p.file, p.line) in cohort_errors or (p.file, None) in cohort_errors, (p, cohort_errors)
            continue
        raw = clean_line(_raw_line(p.file, p.line))
        if not (raw[:1] == b"{" and raw[-1:] == b"}") or prefilter.wants(raw):
            assert (p.file, p.line) in cohort_errors, (p, cohort_errors)
    assert summary["errors"] >= len(cohort_errors)


def _sniff_kind(file: str) -> str | None:
    from milan_fhir._sources import sniff

    return sniff(Path(file)).kind


def _raw_line(file: str, number: int) -> bytes:
    data = Path(file).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.split(b"\n")[number - 1]


def _synthea_like_export(folder: Path) -> None:
    """A Bulk Data export folder as Synthea / a server writes it: one NDJSON file per type, plus log and manifest."""
    folder.mkdir()
    by_type: dict[str, list[dict]] = {}
    for n in range(6):
        for r in _patient(n):
            by_type.setdefault(r["resourceType"], []).append(r)
    by_type.setdefault("Encounter", []).extend(
        {"resourceType": "Encounter", "id": f"e{n}", "status": "finished", "subject": {"reference": f"Patient/h{n}"}}
        for n in range(6))
    for rtype, items in by_type.items():
        (folder / f"{rtype}.ndjson").write_bytes(corpus.ndjson(items))
    (folder / "log.ndjson").write_bytes(b'{"level":"info","message":"export started"}\n{"level":"info","message":"done"}\n')
    (folder / "manifest.json").write_text(json.dumps({
        "transactionTime": "2026-01-01T00:00:00Z", "request": "https://x/$export", "requiresAccessToken": False,
        "output": [{"type": t, "url": f"{t}.ndjson"} for t in by_type], "error": []}, indent=2))


def test_bulk_export_folder_with_log_and_manifest_same_through_both_paths(tmp_path, capsys):
    from milan_fhir._cli import main

    folder = tmp_path / "export"
    _synthea_like_export(folder)
    assert main(["evaluate", str(folder), "--as-of", AS_OF, "--format", "json"]) == 0
    out = capsys.readouterr()
    evaluated = [orjson.loads(x) for x in out.out.splitlines()]
    assert len(evaluated) == 6 and {r["verdict"] for r in evaluated} == {"eligible"}
    assert "log.ndjson" in out.err and "manifest.json" in out.err
    summary = run_cohort(folder, tmp_path / "out", as_of=AS_OF, workers=2, all_patients=True)
    assert [orjson.loads(x) for x in (tmp_path / "out" / "results.ndjson").read_bytes().splitlines()] == evaluated
    errors = (tmp_path / "out" / "errors.ndjson").read_text()
    assert "log.ndjson" in errors and "manifest.json" in errors
    assert summary["tally"]["patients"] == 6


def test_pretty_bundles_folder_same_through_both_paths(tmp_path):
    folder = tmp_path / "bundles"
    folder.mkdir()
    for n in range(4):
        res = _patient(n)
        for r in res[1:]:
            if isinstance(r.get("subject"), dict):
                r["subject"] = {"reference": f"urn:uuid:{res[0]['id']}"}  # resolved through the Bundle's fullUrls
        (folder / f"patient-{n}.json").write_bytes(corpus.pretty_bundle(res))
    (folder / "fixture.json").write_bytes(corpus.VIGNETTE.read_bytes())
    evaluated = [milan_fhir.to_json(ev) for ev in milan_fhir.evaluate(folder, as_of=AS_OF, problems=[])]
    assert len(evaluated) == 5
    run_cohort(folder, tmp_path / "out", as_of=AS_OF, workers=1, all_patients=True)
    cohort = [orjson.loads(x) for x in (tmp_path / "out" / "results.ndjson").read_bytes().splitlines()]
    assert cohort == evaluated
    assert (tmp_path / "out" / "errors.ndjson").read_bytes() == b""
    # and the default cohort (NET or liver metastasis on record) finds them all too
    summary = run_cohort(folder, tmp_path / "out2", as_of=AS_OF, workers=1)
    assert summary["tally"]["patients"] == 5


def test_the_fixtures_folder_same_through_both_paths(tmp_path):
    folder = corpus.ROOT / "fixtures"
    evaluated = [milan_fhir.to_json(ev) for ev in milan_fhir.evaluate(folder, as_of=AS_OF, problems=[])]
    assert len(evaluated) > 10
    run_cohort(folder, tmp_path / "out", as_of=AS_OF, workers=2, all_patients=True)
    cohort = [orjson.loads(x) for x in (tmp_path / "out" / "results.ndjson").read_bytes().splitlines()]
    assert cohort == evaluated
