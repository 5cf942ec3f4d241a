"""Issue 10, files: outputs never follow symlinks, never collide, are private, atomic, and leave no temp files;
export file names never leave --out; cohort helpers die with their parent."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

import milan_fhir
from milan_fhir import _sink
from milan_fhir._cli import main
from milan_fhir.errors import OutputError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
AS_OF = "2026-06-30"


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_atomic_write_is_private_and_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MILAN_FHIR_FILE_MODE", raising=False)
    out = _sink.ensure_dir(tmp_path / "new" / "out")
    _sink.write_bytes(out / "a.json", b"{}")
    assert (out / "a.json").read_bytes() == b"{}"
    assert mode(out / "a.json") == 0o600 and mode(out) == 0o700 and mode(out.parent) == 0o700
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]


def test_file_mode_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_FILE_MODE", "0640")
    _sink.write_bytes(tmp_path / "a.json", b"{}")
    assert mode(tmp_path / "a.json") == 0o640
    monkeypatch.setenv("MILAN_FHIR_FILE_MODE", "rw-r--r--")
    with pytest.raises(OutputError):
        _sink.write_bytes(tmp_path / "b.json", b"{}")


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    (tmp_path / "a.json").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with _sink.atomic_open(tmp_path / "a.json") as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.json").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_symlink_at_the_file_name_is_replaced_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.ndjson").symlink_to(victim)
    [ev] = milan_fhir.evaluate(FIXTURES / "01-ileal-net-eligible.json", as_of=AS_OF)
    from milan_fhir._cli._common import write_out_dir
    from milan_fhir._mappings import default_mappings

    write_out_dir(out, [ev], default_mappings())
    assert victim.read_bytes() == b"precious"
    assert not (out / "results.ndjson").is_symlink() and b"Patient/" in (out / "results.ndjson").read_bytes()


def test_out_that_is_a_symlink_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    rc = main(["evaluate", str(FIXTURES / "01-ileal-net-eligible.json"), "--as-of", AS_OF,
               "--out", str(tmp_path / "link")])
    assert rc == 2 and "symbolic link" in capsys.readouterr().err
    assert list(real.iterdir()) == []


def test_ids_that_collide_as_file_names_get_distinct_files(tmp_path, capsys):
    """Finding: 'wrote 5' with 4 files: two patients whose ids map to one file name overwrote each other."""
    src = orjson.loads((FIXTURES / "01-ileal-net-eligible.json").read_bytes())
    bundles = []
    for pid in ("abc", "ABC", "Abc", "x.y"):  # twins on a case-insensitive file system
        b = orjson.loads(orjson.dumps(src).replace(b'"' + src["entry"][0]["resource"]["id"].encode() + b'"',
                                                    b'"' + pid.encode() + b'"'))
        b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
        bundles.append(b)
    inp = tmp_path / "in"
    inp.mkdir()
    for i, b in enumerate(bundles):
        (inp / f"{i}.json").write_bytes(orjson.dumps(b))
    rc = main(["evaluate", str(inp), "--as-of", AS_OF, "--out", str(tmp_path / "out"), "--format", "json"])
    err = capsys.readouterr().err
    files = [p for p in (tmp_path / "out").iterdir() if p.name != "results.ndjson"]
    assert rc == 0 and len(files) == 4 and "wrote 4 RiskAssessment" in err
    subjects = {orjson.loads(p.read_bytes())["subject"]["reference"] for p in files}
    assert len(subjects) == 4
    assert len({p.name.casefold() for p in files}) == 4


def test_safe_name_never_leaves_the_folder():
    for bad in ("../../etc/passwd", "/abs", ".hidden", "a/b", "..", "x\x00y"):
        name = _sink.safe_name(bad)
        assert "/" not in name and not name.startswith(".") and "\x00" not in name
    assert _sink.safe_name("v01-p1") == "v01-p1"
    assert _sink.safe_name("a/b") != _sink.safe_name("a_b")


def test_stale_temp_files_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".results.ndjson{_sink.TMP_MARK}{pid}-0"
    mine = tmp_path / f".summary.json{_sink.TMP_MARK}{os.getpid()}-0"
    stale.write_bytes(b"half")
    mine.write_bytes(b"in progress")
    assert _sink.clean_stale(tmp_path) == 1
    assert not stale.exists() and mine.exists()


def test_cohort_run_cleans_temp_files_a_killed_merge_left(tmp_path):
    from milan_fhir._cohort import run_cohort
    from test_cohort import make_export

    export = make_export(tmp_path / "export")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = out / f".results.ndjson{_sink.TMP_MARK}{int(dead.stdout)}-3"
    left.write_bytes(b"partial merge")
    run_cohort(export, out, as_of=AS_OF, workers=1)
    assert not left.exists()
    for name in ("results.ndjson", "summary.json", "report.html"):
        assert mode(out / name) == 0o600
    assert not [p for p in out.iterdir() if _sink.TMP_MARK in p.name]


# --------------------------------------------------------------------------------------------- export names


@pytest.mark.parametrize("evil", ["../../escaped", "/tmp/abs-escaped", "Patient/../../x", "Observation\x1b[2J"])
def test_export_manifest_types_never_name_files(tmp_path, evil):
    """Finding: output[].type was used unchecked in a file name: '../../x' wrote outside --out."""
    from test_cohort import make_export
    from test_cohort_export import FakeBulkServer

    from milan_fhir._client import FhirClient
    from milan_fhir._cohort._export import bulk_export
    from milan_fhir.errors import FhirServerError

    export = make_export(tmp_path / "export")
    server = FakeBulkServer(export, pending_polls=0)
    server.type_of = lambda name: evil  # every output claims the evil type
    dest = tmp_path / "a" / "b" / "dl"
    before = set(tmp_path.rglob("*"))
    with server, FhirClient(server.base_url, retries=0) as c, pytest.raises(FhirServerError) as exc:
        bulk_export(c, dest, sleep=lambda s: None, log=lambda m: None)
    assert "not asked for" in str(exc.value) and "\x1b" not in str(exc.value)
    new = set(tmp_path.rglob("*")) - before
    assert all(dest in p.parents or p == dest or p in dest.parents for p in new), new
    assert not Path("/tmp/abs-escaped-1.ndjson").exists()


# --------------------------------------------------------------------------------------------- helper lifetime


def test_cohort_helpers_exit_when_the_parent_is_killed(tmp_path):
    """Finding: helper processes outlived a killed cohort run."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        sys.path.insert(0, %r)
        from milan_fhir._cohort._run import _executor
        pool = _executor(2).executor
        fut = pool.submit(os.getpid)
        print(fut.result(), flush=True)
        pool.submit(time.sleep, 120)
        time.sleep(120)
    """ % str(Path(__file__).resolve().parent.parent)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    helper = int(proc.stdout.readline())
    os.kill(helper, 0)  # alive
    proc.kill()
    proc.wait()
    for _ in range(100):
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        try:  # reaped by init or still a zombie: a zombie has stopped working
            with open(f"/proc/{helper}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(helper, 9)
        pytest.fail("the helper process outlived its killed parent")
