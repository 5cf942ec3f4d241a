"""The Spark engine (milan_fhir.spark, issue 12) against the local engine, on a real local Spark session.

One session (``local[2]``) for the whole test run (tests/test_spark_hapi.py shares it). Every comparison is byte for byte: results, RiskAssessments,
errors and the report; the summary without its ``run`` part (timings and engine settings). Skipped only when
Java is missing and ``CI`` is not ``true``; with ``CI=true`` a missing Java or PySpark fails the run.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from test_cohort import _generator

from milan_fhir._cohort import run_cohort as local_cohort

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-01-15"
FIXTURES_AS_OF = "2026-06-30"
OUTPUTS = ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson", "report.html")
CI = os.environ.get("CI", "").lower() == "true"


def _java() -> bool:
    return bool(os.environ.get("JAVA_HOME") or shutil.which("java"))


@pytest.fixture(scope="session")
def spark():
    if not _java() and not CI:
        pytest.skip("no Java runtime (the Spark engine needs Java 17+); CI=true makes this a failure")
    from milan_fhir import spark as ms

    session = ms.session("local[2]", app_name="milan-fhir-tests",
                         config={"spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "4"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _summary(out: Path) -> dict:
    s = orjson.loads((out / "summary.json").read_bytes())
    s.pop("run")
    return s


def assert_same(local: Path, spark_out: Path) -> None:
    for name in OUTPUTS:
        assert (spark_out / name).read_bytes() == (local / name).read_bytes(), name
    assert _summary(spark_out) == _summary(local)


class _conf:
    """Spark SQL settings for one block, restored after it."""

    def __init__(self, spark, **kv: str) -> None:
        self.spark, self.kv, self.old = spark, {k.replace("_", "."): v for k, v in kv.items()}, {}

    def __enter__(self):
        for k, v in self.kv.items():
            self.old[k] = self.spark.conf.get(k, None)
            self.spark.conf.set(k, v)

    def __exit__(self, *exc):
        for k, v in self.old.items():
            if v is None:
                self.spark.conf.unset(k)
            else:
                self.spark.conf.set(k, v)


def _fixture_resources():
    for f in sorted((ROOT / "fixtures").glob("*.json")):
        bundle = orjson.loads(f.read_bytes())
        yield bundle, [e["resource"] for e in bundle.get("entry", [])]


@pytest.fixture(scope="module")
def fixtures_export(tmp_path_factory) -> Path:
    """The vignettes as a Bulk export: one NDJSON file per resource type (Observations gzipped)."""
    out = tmp_path_factory.mktemp("fixtures-export")
    by_type: dict[str, list[bytes]] = {}
    for _, resources in _fixture_resources():
        for r in resources:
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
    for rtype, lines in by_type.items():
        data = b"\n".join(lines) + b"\n"
        if rtype == "Observation":
            (out / f"{rtype}.ndjson.gz").write_bytes(gzip.compress(data))
        else:
            (out / f"{rtype}.ndjson").write_bytes(data)
    return out


@pytest.fixture(scope="module")
def messy_export(tmp_path_factory) -> Path:
    """A small synthetic export (benchmarks/generate_export.py) with duplicates, malformed lines, gzip, a
    byte-order mark, CRLF line ends, blank lines and a file that is not FHIR."""
    out = tmp_path_factory.mktemp("messy-export")
    _generator().generate(out, patients=60, resources=30, net_fraction=0.4, seed=11, parts=2)
    cond = sorted(out.glob("Condition*.ndjson"))[0]
    lines = cond.read_bytes().split(b"\n")
    dup = next(ln for ln in lines if b"-nelm" in ln)
    lines[3] = lines[3][: len(lines[3]) // 2]  # truncated JSON
    lines.insert(5, b"")
    lines.insert(7, b"[1, 2, 3]")
    lines.insert(9, dup)  # a duplicate inside the same file: the earlier copy wins
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    cond.write_bytes(b"\n".join(lines))
    obs = sorted(out.glob("Observation*.ndjson"))[-1]
    obs.write_bytes(obs.read_bytes().replace(b"\n", b"\r\n"))
    pat = sorted(out.glob("Patient*.ndjson"))[0]
    (out / (pat.name + ".gz")).write_bytes(gzip.compress(pat.read_bytes() + b'{"resourceType": "Patient", "id": \n'))
    pat.unlink()
    (out / "zz-extra.ndjson").write_bytes(dup + b"\n{bad json\n")
    (out / "log.ndjson").write_bytes(b'{"level": "info", "msg": "export done"}\n')
    return out


def test_fixtures_as_an_export_same_bytes_as_local(spark, fixtures_export, tmp_path):
    from milan_fhir import spark as ms

    local = local_cohort(fixtures_export, tmp_path / "local", as_of=FIXTURES_AS_OF, workers=1, all_patients=True)
    result = ms.run_cohort(spark, fixtures_export, tmp_path / "spark", as_of=FIXTURES_AS_OF, all_patients=True)
    assert result.engine == "spark" and result.patients == local.patients > 250
    assert result["tally"] == local["tally"] and result.verdicts == local.verdicts
    assert_same(tmp_path / "local", tmp_path / "spark")


def test_fixture_bundles_on_one_line_each(spark, tmp_path):
    """One-line Bundles are unwrapped and their fullUrls resolve each other, as in the local engine."""
    from milan_fhir import spark as ms

    src = tmp_path / "src"
    src.mkdir()
    (src / "bundles.ndjson").write_bytes(b"".join(orjson.dumps(b) + b"\n" for b, _ in _fixture_resources()))
    local_cohort(src, tmp_path / "local", as_of=FIXTURES_AS_OF, workers=1)
    ms.run_cohort(spark, src, tmp_path / "spark", as_of=FIXTURES_AS_OF)
    assert_same(tmp_path / "local", tmp_path / "spark")
    assert len((tmp_path / "spark" / "results.ndjson").read_bytes().splitlines()) > 200


def test_messy_export_and_partitionings_agree(spark, messy_export, tmp_path, monkeypatch):
    """Duplicates, malformed lines, gzip, BOM, CRLF: same bytes as local; and the same whatever the number of
    partitions of either step (scan: whole files, or files cut every 64 KB with several splits in a partition;
    group/evaluate: 1, 2 or 8 partitions), and whether the errors are sorted on the driver or by Spark."""
    from milan_fhir import spark as ms
    from milan_fhir._spark import _engine

    local = local_cohort(messy_export, tmp_path / "local", as_of=AS_OF, workers=2, chunk_bytes=4096)
    errors = [orjson.loads(ln) for ln in (tmp_path / "local" / "errors.ndjson").read_bytes().splitlines()]
    reasons = " | ".join(e["reason"] for e in errors)
    assert "more than once" in reasons and "not valid JSON" in reasons and "no line is a FHIR resource" in reasons
    assert local.errors == len(errors) >= 6
    for n, split in ((1, str(1 << 30)), (2, str(1 << 16)), (8, str(1 << 16))):
        out = tmp_path / f"spark-{n}"
        monkeypatch.setattr(_engine, "DRIVER_SORTED_ERRORS", 0 if n == 8 else 100_000)
        with _conf(spark, spark_sql_files_maxPartitionBytes=split, spark_sql_files_openCostInBytes="0"):
            result = ms.run_cohort(spark, messy_export, out, as_of=AS_OF, partitions=n)
        assert_same(tmp_path / "local", out)
        assert result.patients == local.patients > 0


def test_local_files_read_by_the_executors_in_byte_ranges(spark, messy_export, tmp_path, monkeypatch):
    """A local folder is cut into the local engine's byte ranges (one per scan partition, the size Spark's own
    split rule gives), read by the executors themselves; a gzip file damaged mid-way keeps what was read and
    reports the rest at the line after it, as the local engine does."""
    from milan_fhir import spark as ms
    from milan_fhir._spark import _engine
    from milan_fhir._spark._engine import plan_screen

    src = tmp_path / "src"
    shutil.copytree(messy_export, src)
    data = gzip.compress(b"".join(orjson.dumps({"resourceType": "Basic", "id": f"b{i}"}) + b"\n" for i in range(5000)))
    (src / "Basic.ndjson.gz").write_bytes(data[: len(data) // 2])  # cut: the gzip stream ends early
    proc = sorted(src.glob("Procedure*.ndjson"))[0]  # gzip without a .gz name: recognised by content, as locally
    proc.write_bytes(gzip.compress(proc.read_bytes()))
    obs = sorted(src.glob("Observation*.ndjson"))[-1]  # broken lines in every range of a late file, scanned early
    lines = obs.read_bytes().split(b"\n")
    obs.write_bytes(b"\n".join(ln if i % 25 != 3 else ln[:40] for i, ln in enumerate(lines)))
    local_cohort(src, tmp_path / "local", as_of=AS_OF, workers=1)
    errors = (tmp_path / "local" / "errors.ndjson").read_bytes()
    assert b"cannot be read further" in errors
    with _conf(spark, spark_sql_files_maxPartitionBytes="65536", spark_sql_files_openCostInBytes="0"):
        scr = plan_screen(spark, src, as_of=AS_OF)
        chunks = scr.settings.chunks
        assert len(chunks) > len(scr.files) and scr.scan.rdd.getNumPartitions() == len(chunks)
        assert all(end == -1 or end - start <= 65536 + 4096 for _, _, start, end, _, _ in chunks)
        ms.run_cohort(spark, src, tmp_path / "spark", as_of=AS_OF, partitions=2)
        assert_same(tmp_path / "local", tmp_path / "spark")
        monkeypatch.setattr(_engine, "DRIVER_SORTED_ERRORS", 0)  # errors sorted by Spark, streamed
        ms.run_cohort(spark, src, tmp_path / "spark-sorted", as_of=AS_OF, partitions=3)
    assert_same(tmp_path / "local", tmp_path / "spark-sorted")


def test_whole_file_bundles_read_as_locally(spark, tmp_path):
    """The vignettes as they are bundled (pretty-printed whole-file Bundles, and a file that is not FHIR):
    the executors read each document as the local engine does, same bytes."""
    from milan_fhir import spark as ms

    src = tmp_path / "src"
    shutil.copytree(ROOT / "fixtures", src)
    (src / "notes.json").write_bytes(b'{"hello": "world"}\n')
    local = local_cohort(src, tmp_path / "local", as_of=FIXTURES_AS_OF, workers=1, all_patients=True)
    result = ms.run_cohort(spark, src, tmp_path / "spark", as_of=FIXTURES_AS_OF, all_patients=True)
    assert result.patients == local.patients > 250
    assert_same(tmp_path / "local", tmp_path / "spark")
    assert b"notes.json" in (tmp_path / "spark" / "errors.ndjson").read_bytes()


def test_a_glob_is_read_by_spark_text_source(spark, messy_export, tmp_path):
    """A glob (as for object storage) goes through Spark's own text source, not the byte ranges: the same
    results, RiskAssessments and error lines as the local engine (files named by their URIs)."""
    from milan_fhir import spark as ms
    from milan_fhir._spark._engine import plan_screen

    local_cohort(messy_export, tmp_path / "local", as_of=AS_OF, workers=1)
    glob = str(messy_export) + "/*.ndjson*"
    assert plan_screen(spark, glob, as_of=AS_OF).settings.chunks == ()
    ms.run_cohort(spark, glob, tmp_path / "spark", as_of=AS_OF)
    for name in ("results.ndjson", "risk-assessments.ndjson"):
        assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name

    def errors(out: Path) -> list[tuple]:
        rows = [orjson.loads(ln) for ln in (out / "errors.ndjson").read_bytes().splitlines()]
        return [(Path(e["file"].removeprefix("file:")).name, e["line"], e["reason"]) for e in rows]

    assert errors(tmp_path / "spark") == errors(tmp_path / "local") and len(errors(tmp_path / "local")) >= 6


def test_screen_dataframe_and_parquet(spark, messy_export, tmp_path):
    from milan_fhir import spark as ms

    local_cohort(messy_export, tmp_path / "local", as_of=AS_OF, workers=1)
    df = ms.screen(spark, messy_export, as_of=AS_OF, partitions=3)
    assert df.columns == ["patient", "verdict", "result", "risk_assessment"]
    rows = sorted(df.collect(), key=lambda r: r.patient)
    expected = (tmp_path / "local" / "results.ndjson").read_bytes().splitlines()
    assert [r.result.encode() for r in rows] == expected
    assert [r.verdict for r in rows] == [orjson.loads(ln)["verdict"] for ln in expected]
    result = ms.run_cohort(spark, messy_export, tmp_path / "spark", as_of=AS_OF, parquet=True)
    table = spark.read.parquet(str(tmp_path / "spark" / "parquet" / "results"))
    assert sorted(r.risk_assessment.encode() for r in table.collect()) == sorted(
        (tmp_path / "local" / "risk-assessments.ndjson").read_bytes().splitlines())
    assert result.outputs[0] == tmp_path / "spark" / "results.ndjson"


def test_dataframe_of_lines(spark, messy_export, tmp_path):
    """A DataFrame of lines with file and line columns gives the local results and the same error lines."""
    from pyspark.sql import functions as F

    from milan_fhir import spark as ms

    src = tmp_path / "src"
    src.mkdir()
    names = sorted(p.name for p in messy_export.glob("*.ndjson") if p.name != "log.ndjson")
    for name in names:
        shutil.copy(messy_export / name, src / name)
    local_cohort(src, tmp_path / "local", as_of=AS_OF, workers=1)
    rows = [(str(src / name), i + 1, ln) for name in names
            for i, ln in enumerate((src / name).read_bytes().split(b"\n")[:-1] if (src / name).read_bytes().endswith(b"\n")
                                   else (src / name).read_bytes().split(b"\n"))]
    df = spark.createDataFrame(rows, "file string, line long, value binary").repartition(3)
    ms.run_cohort(spark, df, tmp_path / "spark", as_of=AS_OF)
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
        assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    # without line numbers: rows numbered in the DataFrame's order, same results
    one = spark.read.text(str(src / names[0])).select(F.col("value"))
    res = ms.screen(spark, one, as_of=AS_OF, all_patients=True)
    assert res.count() >= 1


def test_import_milan_fhir_does_not_import_pyspark():
    code = ("import sys, milan_fhir, milan_fhir._cohort, milan_fhir.spark; "
            "assert not [m for m in sys.modules if m.startswith(('pyspark', 'py4j'))], 'pyspark imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_spark_submit_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "milan_fhir.spark", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--out" in r.stdout and "--spark-master" in r.stdout


def test_cli_engine_spark_same_outputs(spark, messy_export, tmp_path, capsys):
    """``milan-fhir cohort SOURCE --engine spark --spark-master local[2] --out DIR``: the local engine's outputs
    (in process, on the module's session, which the command reuses and leaves running)."""
    from milan_fhir._cli import main

    assert main(["cohort", str(messy_export), "--out", str(tmp_path / "local"), "--as-of", AS_OF,
                 "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["cohort", str(messy_export), "--engine", "spark", "--spark-master", "local[2]",
                 "--out", str(tmp_path / "spark"), "--as-of", AS_OF, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Cohort screening as of 2026-01-15" in text and "results.ndjson" in text
    assert_same(tmp_path / "local", tmp_path / "spark")
    assert spark.sparkContext._jsc is not None  # still running
    assert main(["cohort", str(messy_export), "--resume", "--engine", "spark", "--out", str(tmp_path / "x")]) == 2
    assert "--resume" in capsys.readouterr().err


def test_evaluate_command_does_not_import_pyspark():
    code = ("import sys; from milan_fhir._cli import main; "
            f"rc = main(['evaluate', {str(ROOT / 'fixtures' / '01-ileal-net-eligible.json')!r}, '--as-of', '2026-06-30']); "
            "assert not [m for m in sys.modules if m.startswith(('pyspark', 'py4j'))], 'pyspark imported'; "
            "sys.exit(0 if rc in (0, 1) else rc)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)
