"""Hostile files (issue 9): no traceback, no hang, no silent drop; ``evaluate`` and ``cohort`` read alike.

Every case of ``tests/hostile/corpus.py`` is tried with both commands (in-process, through ``milan_fhir._cli.main``
so an escaping exception fails the test), as the hostile file alone and inside a folder beside a clean patient
file, under a hang guard (``signal.alarm``; a generous bound, not a performance assertion).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
import corpus  # noqa: E402

from milan_fhir._cli import main  # noqa: E402

CASES = corpus.cases()
HANG_GUARD_S = 120


@pytest.fixture(autouse=True)
def hang_guard():
    def fire(signum, frame):
        raise TimeoutError(f"no answer after {HANG_GUARD_S} s: a hang")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(HANG_GUARD_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _clean_file() -> bytes:
    """Another patient, clean, for the folder runs (ids renamed so it never duplicates the case's patient)."""
    return corpus.ndjson(corpus.vignette()).replace(b"v01-p1", b"clean-p1")


def _evaluate(path: Path, capsys) -> tuple[int, list[dict], str]:
    code = main(["evaluate", str(path), "--as-of", corpus.AS_OF, "--format", "json"])
    out = capsys.readouterr()
    return code, [orjson.loads(line) for line in out.out.splitlines()], out.err


def _cohort(path: Path, out: Path, capsys) -> tuple[int, list[dict], str]:
    """Exit status, results, and stderr followed by errors.ndjson (the cohort's report)."""
    code = main(["cohort", str(path), "--out", str(out), "--all-patients", "--as-of", corpus.AS_OF,
                 "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    _assert_clean_stderr(err)
    if code != 0:
        return code, [], err
    results = [orjson.loads(line) for line in (out / "results.ndjson").read_bytes().splitlines()]
    errors = (out / "errors.ndjson").read_text()
    return code, results, err + errors


def _assert_clean_stderr(err: str) -> None:
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith("milan-fhir"), f"a stray stderr line: {line!r}"


def _no_forged_patients(results: list[dict]) -> None:
    for r in results:
        assert r["patient"] in ("Patient/v01-p1", "Patient/clean-p1"), r["patient"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_inside_a_folder(case, tmp_path, capsys, monkeypatch):
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    folder = case.write(tmp_path / "in")
    (folder / "zz-clean.ndjson").write_bytes(_clean_file())
    code, evaluated, err = _evaluate(folder, capsys)
    assert code == 0, err  # one bad file never stops the rest
    _assert_clean_stderr(err)
    assert "Patient/clean-p1" in [r["patient"] for r in evaluated]
    _no_forged_patients(evaluated)
    for text in case.expect:
        assert text.lower() in err.lower(), f"{text!r} not reported:\n{err}"
    if case.clean and case.name != "operation-outcome-file":
        verdicts = {r["patient"]: r["verdict"] for r in evaluated}
        assert verdicts.get("Patient/v01-p1") == "eligible", (verdicts, err)  # read in full, nothing lost
        assert "warning" not in err, err
    ccode, cohort, cerr = _cohort(folder, tmp_path / "out", capsys)
    assert ccode == 0, cerr
    assert cohort == evaluated  # the same reader: the same results, line for line
    for text in case.expect:
        assert text.lower() in cerr.lower(), f"{text!r} not in the cohort's errors:\n{cerr}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_as_a_file(case, tmp_path, capsys, monkeypatch):
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    folder = case.write(tmp_path / "in")
    path = folder / case.hostile_file
    code, evaluated, err = _evaluate(path, capsys)
    _assert_clean_stderr(err)
    assert code == (2 if case.fatal_alone else 0), err
    if code == 2:
        lines = err.strip().splitlines()
        assert lines[-1].startswith("milan-fhir: error: ") and str(path) in lines[-1]
    _no_forged_patients(evaluated)
    expect = case.expect if case.expect_alone is None else case.expect_alone
    for text in expect:
        assert text.lower() in err.lower(), f"{text!r} not reported:\n{err}"
    ccode, cohort, cerr = _cohort(path, tmp_path / "out", capsys)
    assert ccode in (0, 2)
    assert cohort == evaluated
    if ccode == 0:
        for text in expect:
            assert text.lower() in cerr.lower(), f"{text!r} not in the cohort's errors:\n{cerr}"


def test_control_characters_never_reach_a_patient_key_or_line(tmp_path, capsys):
    case = next(c for c in CASES if c.name == "control-char-newline-in-subject")
    folder = case.write(tmp_path / "in")
    code, evaluated, err = _evaluate(folder, capsys)
    assert code == 0 and [r["patient"] for r in evaluated] == ["Patient/v01-p1"]
    assert "Patient/forged" not in "".join(orjson.dumps(r).decode() for r in evaluated)
    warning = next(line for line in err.splitlines() if "control character" in line)
    assert "\\n" in warning  # escaped, on one line
    for run in (1, 2):  # and again on --resume: the same, no AssertionError
        args = ["cohort", str(folder), "--out", str(tmp_path / "out"), "--all-patients", "--as-of", corpus.AS_OF,
                "--workers", "1", "--no-progress"] + (["--resume"] if run == 2 else [])
        assert main(args) == 0
        capsys.readouterr()
        results = (tmp_path / "out" / "results.ndjson").read_bytes().splitlines()
        assert [orjson.loads(line)["patient"] for line in results] == ["Patient/v01-p1"]


def test_bundle_problems_name_the_file_line_of_the_entry(tmp_path, capsys):
    case = next(c for c in CASES if c.name == "pretty-bundle-with-bad-entry")
    folder = case.write(tmp_path / "in")
    text = (folder / "b.json").read_text().splitlines()
    # the line where the bad entry's object starts: the "{" line just before its "fullUrl"
    url_line = next(i for i, line in enumerate(text, start=1) if '"urn:uuid:bad-ki67"' in line)
    expected = url_line - 1
    code, _, err = _evaluate(folder / "b.json", capsys)
    assert code == 0
    assert f"b.json:{expected} Observation/bad-ki67" in err
    assert main(["cohort", str(folder), "--out", str(tmp_path / "out"), "--all-patients", "--as-of", corpus.AS_OF,
                 "--workers", "1", "--no-progress"]) == 0
    errors = [orjson.loads(line) for line in (tmp_path / "out" / "errors.ndjson").read_bytes().splitlines()]
    assert [(e["line"], e["resource"]) for e in errors] == [(expected, "Observation/bad-ki67")]


def test_json_escaped_codes_are_used_by_both_paths(tmp_path, capsys):
    case = next(c for c in CASES if c.name == "json-escapes-in-codes")
    folder = case.write(tmp_path / "in")
    _, evaluated, _ = _evaluate(folder, capsys)
    evidence = evaluated[0]["criteria"]["low_grade"]["evidence"]
    assert "Observation/v01-p1-ki67" in evidence
    resection = evaluated[0]["criteria"]["primary_resected_portal"]["evidence"]
    assert "Procedure/v01-p1-resection" in resection  # "Pro\u0063edure": still a Procedure
