"""Cohort screening (milan_fhir._cohort): same results as per-patient evaluation, deterministic across worker
counts, bad lines reported and skipped, resumable without duplicates, CLI and summary."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import sys
from pathlib import Path

import orjson
import pytest

import milan_fhir
from milan_fhir._cohort import Tally, render_text, run_cohort
from milan_fhir._cohort import _run as cohort_run
from milan_fhir._cohort._work import in_cohort
from milan_fhir._domain import CRITERIA

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-01-15"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_export", ROOT / "benchmarks" / "generate_export.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_export", mod)
    spec.loader.exec_module(mod)
    return mod


def make_export(path: Path, **kw) -> Path:
    opts = dict(patients=40, resources=20, net_fraction=0.4, seed=7, parts=2)
    opts.update(kw)
    _generator().generate(path, **opts)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("export"))


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_all_patients_equal_per_patient_evaluate(export, tmp_path):
    summary = run_cohort(export, tmp_path, as_of=AS_OF, workers=1, all_patients=True, chunk_bytes=4096)
    expected = milan_fhir.evaluate(export, as_of=AS_OF)
    assert len(expected) == 40
    assert _lines(tmp_path / "results.ndjson") == [milan_fhir.to_json(ev) for ev in expected]
    assert _lines(tmp_path / "risk-assessments.ndjson") == [milan_fhir.to_risk_assessment(ev) for ev in expected]
    assert summary["tally"]["patients"] == 40
    assert summary["patients_seen"] == 40


def test_default_cohort_is_net_or_liver_metastasis_patients(export, tmp_path):
    summary = run_cohort(export, tmp_path, as_of=AS_OF, workers=1)
    expected = [ev for ev in milan_fhir.evaluate(export, as_of=AS_OF) if in_cohort(ev.record)]
    assert 0 < len(expected) < 40
    got = _lines(tmp_path / "results.ndjson")
    assert got == [milan_fhir.to_json(ev) for ev in expected]
    verdicts = {v: sum(1 for ev in expected if str(ev.verdict) == v) for v in ("eligible", "ineligible", "indeterminate")}
    assert summary["tally"]["verdicts"] == verdicts
    for name in CRITERIA:
        for status in ("met", "not_met", "indeterminate"):
            n = sum(1 for ev in expected if str(ev.criteria[name].status) == status)
            assert summary["tally"]["criteria"][name][status] == n
    assert (tmp_path / "summary.json").exists() and (tmp_path / "report.html").exists()
    assert not (tmp_path / cohort_run.WORK_DIR).exists()


def test_same_bytes_with_one_or_two_workers(export, tmp_path):
    outs = []
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        run_cohort(export, out, as_of=AS_OF, workers=w, chunk_bytes=8192)
        outs.append(out)
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson", "report.html"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    patients = [r["patient"] for r in _lines(outs[0] / "results.ndjson")]
    assert patients == sorted(patients) and len(set(patients)) == len(patients)


def test_spawned_helpers_give_the_same_bytes(export, tmp_path, monkeypatch):
    """Helpers started with spawn (the default off Linux) work and agree with the forked ones."""
    run_cohort(export, tmp_path / "fork", as_of=AS_OF, workers=2, chunk_bytes=8192)
    monkeypatch.setenv("MILAN_FHIR_MP_START", "spawn")
    run_cohort(export, tmp_path / "spawn", as_of=AS_OF, workers=2, chunk_bytes=8192)
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
        assert (tmp_path / "fork" / name).read_bytes() == (tmp_path / "spawn" / name).read_bytes(), name


class _TaskFailed(Exception):
    pass


def _slow_task(task):
    """A stage task for the _run_all tests: notes who ran it, takes a while; fails from the 5th task on when run
    in the process it is told to fail in (``main``: the pid given; ``helper``: any other)."""
    import os
    import time

    value, log, fail_in, main = task
    with open(log, "a") as fh:
        fh.write(f"{value} {os.getpid()}\n")
    time.sleep(0.02)
    if value >= 5 and fail_in and (os.getpid() == main) == (fail_in == "main"):
        raise _TaskFailed(value)
    return value


def _ran(log):
    return [tuple(int(x) for x in line.split()) for line in Path(log).read_text().splitlines()]


def test_every_task_of_a_stage_runs_once_in_every_process(tmp_path):
    import os

    log = tmp_path / "ran"
    tasks = [(i, str(log), None, 0) for i in range(40)]
    got, advanced = [], []
    with cohort_run._executor(2) as pool:
        for _ in range(2):  # a second stage on the same helpers
            log.write_text("")
            got.clear()
            advanced.clear()
            cohort_run._run_all(pool, _slow_task, tasks, got.append, advanced.append, lambda t: t[0] + 1)
            assert sorted(got) == list(range(40))
            assert sorted(v for v, _ in _ran(log)) == list(range(40))  # each once
            assert sum(advanced) == sum(range(1, 41))
            pids = {pid for _, pid in _ran(log)}
            assert os.getpid() in pids and len(pids) == 2  # the main process and the helper both worked


@pytest.mark.parametrize("where", ["main", "helper"])
def test_a_failed_task_stops_the_stage_and_is_raised(tmp_path, where):
    import os

    log = tmp_path / "ran"
    log.write_text("")
    tasks = [(i, str(log), where, os.getpid()) for i in range(200)]
    with cohort_run._executor(2) as pool:
        with pytest.raises(_TaskFailed):
            cohort_run._run_all(pool, _slow_task, tasks, lambda r: None)
    ran = _ran(log)
    assert len(ran) < 200  # nobody took the rest of the stage
    failed_in = {pid for v, pid in ran if v >= 5 and (pid == os.getpid()) == (where == "main")}
    assert failed_in  # the failure came from the process meant


def test_gzip_and_mixed_files_give_the_same_results(export, tmp_path):
    mixed = make_export(tmp_path / "mixed", gz=True, mixed=True)
    assert all(p.name.endswith(".gz") for p in mixed.iterdir())
    run_cohort(export, tmp_path / "a", as_of=AS_OF, workers=1)
    run_cohort(mixed, tmp_path / "b", as_of=AS_OF, workers=1)
    assert (tmp_path / "a" / "results.ndjson").read_bytes() == (tmp_path / "b" / "results.ndjson").read_bytes()


def _observation_file(folder: Path) -> Path:
    return sorted(folder.glob("Observation*.ndjson"))[0]


def test_bad_lines_go_to_errors_and_the_run_goes_on(export, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(export, src)
    obs = _observation_file(src)
    lines = obs.read_bytes().split(b"\n")
    # line 3: truncated JSON (a noise line); line 5: an invalid Ki-67 Observation; a blank line; junk at the end
    lines[2] = lines[2][: len(lines[2]) // 2]
    bad_ki67 = {"resourceType": "Observation", "id": "bad-ki67", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
                "subject": {"reference": "Patient/p07-0000001"}, "effectiveDateTime": "not-a-date",
                "valueQuantity": {"value": 5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    lines.insert(4, orjson.dumps(bad_ki67))
    lines.insert(6, b"")
    lines.append(b"[1, 2, 3]")
    obs.write_bytes(b"\n".join(lines) + b"\n")
    (src / "README.txt").write_text("not NDJSON\n")

    summary = run_cohort(src, tmp_path / "out", as_of=AS_OF, workers=2, chunk_bytes=2048)
    errors = _lines(tmp_path / "out" / "errors.ndjson")
    by_line = {(Path(e["file"]).name, e["line"]): e for e in errors}
    assert by_line[(obs.name, 3)]["reason"].startswith("not valid JSON")  # the reasons of the shared line reader
    assert by_line[(obs.name, 5)]["resource"] == "Observation/bad-ki67"
    assert "effectiveDateTime" in (by_line[(obs.name, 5)]["field"] or "") + by_line[(obs.name, 5)]["reason"]
    last = len(lines) - (1 if lines[-1] == b"" else 0)
    assert by_line[(obs.name, last)]["reason"].startswith("not FHIR: expected a JSON object")
    assert any(e["file"].endswith("README.txt") and "skipped" in e["reason"] for e in errors)
    assert summary["errors"] == len(errors) == 4
    # everything else was evaluated as before
    clean = run_cohort(export, tmp_path / "clean", as_of=AS_OF, workers=1)
    assert summary["tally"]["patients"] == clean["tally"]["patients"]


def test_duplicate_resource_is_reported_once_and_counted_once(export, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(export, src)
    cond = sorted(src.glob("Condition*.ndjson"))[0]
    first = next(l for l in cond.read_bytes().splitlines() if b"-nelm" in l)
    (src / "extra.ndjson").write_bytes(first + b"\n")
    run_cohort(src, tmp_path / "out", as_of=AS_OF, workers=1)
    errors = _lines(tmp_path / "out" / "errors.ndjson")
    assert len(errors) == 1 and "more than once" in errors[0]["reason"] and errors[0]["file"].endswith("extra.ndjson")
    run_cohort(export, tmp_path / "clean", as_of=AS_OF, workers=1)
    assert (tmp_path / "out" / "results.ndjson").read_bytes() == (tmp_path / "clean" / "results.ndjson").read_bytes()


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_without_duplicates(export, tmp_path, monkeypatch):
    out = tmp_path / "out"
    reference = run_cohort(export, tmp_path / "ref", as_of=AS_OF, workers=1, chunk_bytes=8192)
    real = cohort_run.evaluate_bucket
    calls = []

    def flaky(task):
        calls.append(task.bucket)
        if len(calls) == 3:
            raise _Stop("interrupted")
        return real(task)

    monkeypatch.setattr(cohort_run, "evaluate_bucket", flaky)
    with pytest.raises(_Stop):
        run_cohort(export, out, as_of=AS_OF, workers=1, chunk_bytes=8192)
    assert not (out / "summary.json").exists()
    buckets = orjson.loads((out / cohort_run.WORK_DIR / "manifest.json").read_bytes())["buckets"]
    finished = calls[:2]

    scans = []
    real_scan = cohort_run.scan_chunk
    monkeypatch.setattr(cohort_run, "scan_chunk", lambda t: scans.append(t) or real_scan(t))
    calls.clear()
    monkeypatch.setattr(cohort_run, "evaluate_bucket", lambda t: calls.append(t.bucket) or real(t))
    summary = run_cohort(export, out, as_of=AS_OF, workers=1, chunk_bytes=8192, resume=True)
    assert summary["run"]["resumed"] is True
    assert scans == []  # every chunk was finished before the interruption
    assert sorted(calls) == sorted(set(range(buckets)) - set(finished))  # the two finished before the interruption
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    # and again from scratch into the same folder: replaced, not appended
    run_cohort(export, out, as_of=AS_OF, workers=1, chunk_bytes=8192)
    results = _lines(out / "results.ndjson")
    assert len(results) == reference["tally"]["patients"] == len({r["patient"] for r in results})


def test_resume_rescans_a_damaged_or_missing_piece(export, tmp_path, monkeypatch):
    """A chunk's piece holds its facts, errors and record; one cut short or gone is scanned again on resume,
    the others are reused, and the outputs are those of a whole run."""
    ref = tmp_path / "ref"
    run_cohort(export, ref, as_of=AS_OF, workers=1, chunk_bytes=8192)
    out = tmp_path / "out"
    monkeypatch.setattr(cohort_run, "evaluate_bucket", lambda t: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        run_cohort(export, out, as_of=AS_OF, workers=1, chunk_bytes=8192)
    monkeypatch.undo()
    work = out / cohort_run.WORK_DIR
    pieces = sorted(work.glob("c*.facts"))
    assert len(pieces) >= 4 and not list(work.glob("c*.errors")) and not list(work.glob("c*.done"))
    data = pieces[1].read_bytes()
    pieces[1].write_bytes(data[: len(data) - 3])  # its record cut
    pieces[2].write_bytes(b"\x00" * 5)  # shorter than any record
    pieces[3].unlink()
    scans = []
    real_scan = cohort_run.scan_chunk
    monkeypatch.setattr(cohort_run, "scan_chunk", lambda t: scans.append(t.chunk.index) or real_scan(t))
    summary = run_cohort(export, out, as_of=AS_OF, workers=1, chunk_bytes=8192, resume=True)
    assert summary["run"]["resumed"] is True
    assert sorted(scans) == sorted(int(p.name[1:7]) for p in pieces[1:4])
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_resume_with_changed_inputs_starts_from_scratch(export, tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    shutil.copytree(export, src)
    out = tmp_path / "out"
    monkeypatch.setattr(cohort_run, "evaluate_bucket", lambda t: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        run_cohort(src, out, as_of=AS_OF, workers=1)
    monkeypatch.undo()
    with open(sorted(src.glob("Patient*.ndjson"))[0], "ab") as fh:
        fh.write(b'{"resourceType":"Patient","id":"late-arrival","birthDate":"1970-01-01"}\n')
    summary = run_cohort(src, out, as_of=AS_OF, workers=1, resume=True)
    assert summary["run"]["resumed"] is False
    assert "starting from scratch" in capsys.readouterr().err
    assert summary["patients_seen"] == 41


def test_tally_flow():
    met = dict.fromkeys(CRITERIA, "met")
    rows = [
        ("eligible", met),
        ("ineligible", {**met, "age": "not_met", "low_grade": "not_met"}),  # leaves at age only
        ("ineligible", {**met, "liver_burden": "not_met"}),
        ("indeterminate", {**met, "low_grade": "indeterminate"}),
        ("ineligible", {**met, "age": "indeterminate", "stable_disease": "not_met"}),
    ]
    t = Tally.of(rows)
    flow = {s["criterion"]: s for s in t.flow()}
    assert flow["age"] == {"criterion": "age", "entering": 5, "lost": 1, "remaining": 4, "indeterminate": 1}
    assert flow["low_grade"]["lost"] == 0 and flow["low_grade"]["indeterminate"] == 1
    assert flow["liver_burden"]["lost"] == 1 and flow["stable_disease"]["lost"] == 1
    assert flow["no_extrahepatic_disease"]["remaining"] == 2
    assert t.criteria["low_grade"] == {"met": 3, "not_met": 1, "indeterminate": 1}
    other = Tally.of(rows[:2])
    other.merge(Tally.of(rows[2:]))
    assert other.as_dict() == t.as_dict()


def test_cli_prints_the_summary(export, tmp_path, capsys):
    from milan_fhir._cli import main

    rc = main(["cohort", str(export), "--out", str(tmp_path / "o"), "--as-of", AS_OF, "--workers", "1",
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    summary = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
    assert "Flow (a patient leaves at the first criterion not met" in out
    assert f"{summary['tally']['patients']} in the cohort" in out
    assert render_text(summary) in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    from milan_fhir._cli import main

    assert main(["cohort", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    assert main(["cohort", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "holds no NDJSON files" in capsys.readouterr().err
    assert main(["cohort", "--out", str(tmp_path / "o"), "--group", "g"]) == 2
    assert "--group needs --server" in capsys.readouterr().err
