"""Sources: files, folders, NDJSON, .gz; whole-file faults raise InputError, one bad line is a problem."""

from __future__ import annotations

import gzip
import json

import pytest

from milan_fhir._sources import InputProblem, Located, read_path, read_resources
from milan_fhir.errors import InputError

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970"}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
       "subject": {"reference": "Patient/p1"}}
BUNDLE = {"resourceType": "Bundle", "type": "collection",
          "entry": [{"fullUrl": "urn:uuid:1", "resource": PATIENT}, {"resource": OBS}]}


def read(path):
    problems: list[InputProblem] = []
    return list(read_path(path, problems)), problems


def test_bundle_file(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps(BUNDLE))
    items, problems = read(f)
    # one line: both entries start on line 1 of the file
    assert [(i.resource["id"], i.line, i.full_url) for i in items] == [("p1", 1, "urn:uuid:1"), ("o1", 1, None)]
    assert all(i.file == str(f) for i in items) and problems == []


def test_single_resource_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(PATIENT))
    items, _ = read(f)
    assert [i.resource for i in items] == [PATIENT]


def test_bundle_entry_without_resource_is_a_problem(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"fullUrl": "urn:uuid:x"}, {"resource": OBS}]}))
    items, problems = read(f)
    assert [i.resource["id"] for i in items] == ["o1"]
    assert [(p.line, p.field) for p in problems] == [(1, "entry[0]")]


def test_ndjson_with_one_bad_line_goes_on(tmp_path):
    f = tmp_path / "data.ndjson"
    f.write_text(json.dumps(PATIENT) + "\n{not json\n\n" + json.dumps({"id": "no-type"}) + "\n" + json.dumps(OBS) + "\n")
    items, problems = read(f)
    assert [(i.resource["id"], i.line) for i in items] == [("p1", 1), ("o1", 5)]
    assert [p.line for p in problems] == [2, 4]
    assert "not valid JSON" in problems[0].reason and "resourceType" in problems[1].reason
    assert str(problems[0]).startswith(f"{f}:2")
    assert "\n" not in str(problems[0])


def test_gz_variants(tmp_path):
    nd = tmp_path / "a.ndjson.gz"
    with gzip.open(nd, "wt") as fh:
        fh.write(json.dumps(PATIENT) + "\n" + json.dumps(OBS) + "\n")
    js = tmp_path / "b.json.gz"
    with gzip.open(js, "wt") as fh:
        fh.write(json.dumps(BUNDLE))
    assert [i.resource["id"] for i in read(nd)[0]] == ["p1", "o1"]
    assert [i.resource["id"] for i in read(js)[0]] == ["p1", "o1"]


def test_bad_gzip_is_an_input_error(tmp_path):
    f = tmp_path / "x.json.gz"
    f.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="gzip") as info:
        read(f)
    assert info.value.file == str(f)


def test_folder_reads_fhir_files_only(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(PATIENT))
    (tmp_path / "b.ndjson").write_text(json.dumps(OBS) + "\n")
    (tmp_path / "a.expected.yaml").write_text("verdict: eligible\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    items, problems = read(tmp_path)
    assert [i.resource["id"] for i in items] == ["p1", "o1"] and problems == []


def test_empty_folder_is_an_input_error(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(InputError, match="no FHIR files") as info:
        read(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file") as info:
        read(tmp_path / "nope.json")
    assert "nope.json" in str(info.value) and "\n" not in str(info.value)


def test_invalid_json_file_is_an_input_error(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"resourceType": "Bundle", ')
    with pytest.raises(InputError, match="not valid JSON") as info:
        read(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content", ['{"hello": 1}', "[1, 2]", '"text"'])
def test_json_that_is_not_fhir_is_an_input_error(tmp_path, content):
    f = tmp_path / "x.json"
    f.write_text(content)
    with pytest.raises(InputError, match="not FHIR") as info:
        read(f)
    assert info.value.file == str(f)


def test_ndjson_where_no_line_is_fhir_is_an_input_error(tmp_path):
    f = tmp_path / "x.ndjson"
    f.write_text("{\n  \"resourceType\": \"Patient\"\n}\n")
    with pytest.raises(InputError, match="no line"):
        read(f)


def test_ndjson_named_json_is_read_as_ndjson(tmp_path):
    f = tmp_path / "export.json"
    f.write_text(json.dumps(PATIENT) + "\n" + json.dumps(OBS) + "\n")
    assert [i.resource["id"] for i in read(f)[0]] == ["p1", "o1"]


def test_read_resources_in_memory():
    assert [i.resource["id"] for i in read_resources(BUNDLE)] == ["p1", "o1"]
    assert [i.resource["id"] for i in read_resources([PATIENT, OBS])] == ["p1", "o1"]
    assert [i.resource["id"] for i in read_resources(json.dumps(PATIENT))] == ["p1"]
    problems = []
    assert [i.resource["id"] for i in read_resources([{"x": 1}, OBS], problems)] == ["o1"]
    assert len(problems) == 1
    with pytest.raises(InputError):
        list(read_resources([{"x": 1}]))
    with pytest.raises(InputError):
        list(read_resources({"x": 1}))


def test_located_is_slotted():
    loc = Located({"resourceType": "Patient"}, "f", 1, None)
    with pytest.raises(AttributeError):
        loc.other = 1


def test_ndjson_of_json_objects_without_resource_type_is_an_input_error(tmp_path):
    f = tmp_path / "x.ndjson"
    f.write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(InputError, match="no line is a FHIR resource; first fault at line 1"):
        read(f)


@pytest.mark.parametrize("source", [42, None, 3.5, object()])
def test_evaluate_of_something_that_is_not_input_is_an_input_error(source):
    import milan_fhir

    with pytest.raises(InputError, match="cannot read input of type"):
        milan_fhir.evaluate(source)


def test_pretty_bundle_entries_carry_their_file_line(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps(BUNDLE, indent=2))
    items, problems = read(f)
    text = f.read_text().splitlines()
    starts = [i for i, line in enumerate(text, start=1) if line.strip() == "{" and '"fullUrl"' in text[i]
              or line.strip() == "{" and '"resource"' in text[i]]
    assert [i.line for i in items] == starts[:2] and problems == []


def test_folder_reports_unreadable_files_and_reads_the_rest(tmp_path):
    import os

    (tmp_path / "a.ndjson").write_text(json.dumps(PATIENT) + "\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"transactionTime": "x", "output": []}))
    os.symlink(tmp_path / "missing.ndjson", tmp_path / "gone.ndjson")
    os.mkfifo(tmp_path / "pipe.ndjson")
    items, problems = read(tmp_path)
    assert [i.resource["id"] for i in items] == ["p1"]
    reasons = {os.path.basename(p.file): p.reason for p in problems}
    assert "broken symbolic link" in reasons["gone.ndjson"]
    assert "named pipe" in reasons["pipe.ndjson"]
    assert "not FHIR" in reasons["manifest.json"]


def test_folder_where_nothing_is_readable_is_an_input_error(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"output": []}))
    (tmp_path / "log.ndjson").write_text('{"level": "info"}\n')
    with pytest.raises(InputError, match="no file of the folder could be read"):
        read(tmp_path)


def test_overlong_line_is_reported_without_being_read(tmp_path):
    from milan_fhir._sources import Limits

    f = tmp_path / "x.ndjson"
    f.write_text(json.dumps(PATIENT) + "\n" + json.dumps({**OBS, "note": [{"text": "y" * 5000}]}) + "\n" + json.dumps(OBS) + "\n")
    problems: list[InputProblem] = []
    items = list(read_path(f, problems, Limits(max_line_bytes=1000)))
    assert [i.line for i in items] == [1, 3]
    assert [(p.line, "longer than the limit" in p.reason) for p in problems] == [(2, True)]


def test_split_lines_never_holds_an_overlong_line():
    from milan_fhir._sources import Oversize, split_lines

    blocks = [b"ab\ncd", b"e" * 100, b"f\ng", b"h\n", b"i"]
    lines = [ln for block in split_lines(blocks, 10) for ln in block]
    assert [ln.size if isinstance(ln, Oversize) else ln for ln in lines] == [b"ab", 103, b"gh", b"i"]


def test_gzip_inflation_is_capped(tmp_path):
    from milan_fhir._sources import Limits

    f = tmp_path / "x.ndjson.gz"
    f.write_bytes(gzip.compress((json.dumps(PATIENT) + "\n").encode() + b" " * 2_000_000 + b"\n"))
    problems: list[InputProblem] = []
    items = list(read_path(f, problems, Limits(max_line_bytes=100_000, max_gzip_ratio=10)))
    assert [i.resource["id"] for i in items] == ["p1"]
    assert "inflates to more than 10 times" in problems[-1].reason


# ------------------------------------------------------------------------------------ the allocator's thresholds
class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    import ctypes
    import os

    from milan_fhir import _sources

    libc = _FakeLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(_sources, "_allocator_set", False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    return libc


def test_freed_read_blocks_stay_with_the_process_on_glibc(fake_libc):
    from milan_fhir import _sources

    _sources.keep_read_blocks()
    block = _sources._BLOCK
    assert sorted(fake_libc.calls) == [(-3, 2 * block), (-1, 3 * block)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    _sources.keep_read_blocks()  # once per process
    assert len(fake_libc.calls) == 2


@pytest.mark.parametrize("setting", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "no glibc"])
def test_glibc_settings_of_the_environment_win(fake_libc, monkeypatch, setting):
    import os

    from milan_fhir import _sources

    if setting == "no glibc":
        monkeypatch.setattr(os, "confstr", lambda name: None)
    else:
        monkeypatch.setenv(setting, "131072")
    _sources.keep_read_blocks()
    assert fake_libc.calls == []


def test_lines_spanning_many_blocks_are_cut_as_one_read_would():
    """split_lines and line_blocks, over random block cuts (lines spanning many blocks, oversize lines, blank
    lines), give the lines of one whole read."""
    import random

    from milan_fhir._sources import Oversize, line_blocks, split_lines

    rng = random.Random(3)
    for _ in range(3000):
        data = bytes(rng.choice(b"ab\n\n") for _ in range(rng.randint(0, 60))) + b"x" * rng.choice([0, 0, 17, 40])
        limit = rng.randint(1, 25)
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12)))) if len(data) > 1 else []
        blocks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if b > a]
        whole = data.split(b"\n")
        if whole and whole[-1] == b"":
            whole.pop()
        want = [ln if len(ln) <= limit else ("over", len(ln)) for ln in whole]
        got = [("over", ln.size) if isinstance(ln, Oversize) else ln for lines in split_lines(blocks, limit)
               for ln in lines]
        assert got == want, (blocks, limit)
        runs = []
        for item in line_blocks(blocks, limit):
            if isinstance(item, Oversize):
                runs.append(("over", item.size))
            else:
                buf, start, stop = item
                runs += buf[start:stop].split(b"\n")[:-1]
        assert runs == want, (blocks, limit)
