"""The milan-fhir command line: formats, --out, and bad input (one line on stderr, no traceback)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from milan_fhir._cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "01-ileal-net-eligible.json"
AS_OF = "2026-06-30"


def _bundle() -> dict:
    return json.loads(FIXTURE.read_text())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("milan-fhir: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_json_format_one_object_per_patient(capsys):
    code, out, err = _run(capsys, "evaluate", str(FIXTURE), "--as-of", AS_OF, "--format", "json")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["patient"] == "Patient/v01-p1"
    assert obj["as_of"] == AS_OF
    assert obj["rule_set"] == "milan-net"
    assert set(obj["criteria"]) == {
        "age", "low_grade", "liver_burden", "primary_resected_portal", "stable_disease", "no_extrahepatic_disease"
    }
    assert obj["verdict"] in {"eligible", "ineligible", "indeterminate"}


def test_rule_set_option(capsys):
    code, out, _ = _run(capsys, "evaluate", str(FIXTURE), "--as-of", AS_OF, "--format", "json", "--rule-set", "milan-2007")
    assert code == 0
    assert json.loads(out)["rule_set"] == "milan-2007"


def test_fhir_format_one_risk_assessment_per_line(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text(FIXTURE.read_text())
    (folder / "b.json").write_text((ROOT / "fixtures" / "02-age-60-vs-61.json").read_text())
    code, out, err = _run(capsys, "evaluate", str(folder), "--as-of", AS_OF, "--format", "fhir")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    subjects = []
    for line in lines:
        ra = json.loads(line)
        RiskAssessment.model_validate(ra)
        subjects.append(ra["subject"]["reference"])
    assert subjects == sorted(subjects)


def test_table_is_default(capsys):
    code, out, _ = _run(capsys, "evaluate", str(FIXTURE), "--as-of", AS_OF)
    assert code == 0
    assert out.startswith("Patient/v01-p1  ")
    assert "Liver tumour burden" in out and "No extrahepatic disease" in out


def test_out_dir(capsys, tmp_path):
    out_dir = tmp_path / "results"
    code, out, err = _run(capsys, "evaluate", str(FIXTURE), "--as-of", AS_OF, "--format", "json", "--out", str(out_dir))
    assert code == 0, err
    ra = json.loads((out_dir / "v01-p1.milan-net.json").read_text())
    RiskAssessment.model_validate(ra)
    assert ra["subject"]["reference"] == "Patient/v01-p1"
    results = (out_dir / "results.ndjson").read_text().splitlines()
    assert [json.loads(line)["patient"] for line in results] == ["Patient/v01-p1"]
    assert results[0] == out.splitlines()[0]  # the same JSON as on stdout


def test_invalid_json(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle", "entry": [')
    code, out, err = _run(capsys, "evaluate", str(bad))
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert str(bad) in line and "JSON" in line


@pytest.mark.parametrize("content", ['[1, 2, 3]', '{"hello": "world"}'])
def test_not_fhir(capsys, tmp_path, content):
    bad = tmp_path / "notfhir.json"
    bad.write_text(content)
    code, _, err = _run(capsys, "evaluate", str(bad))
    assert code == 2
    line = _one_error_line(err)
    assert str(bad) in line and "FHIR" in line


def test_bundle_with_one_invalid_resource_warns_and_goes_on(capsys, tmp_path):
    bundle = _bundle()
    second = copy.deepcopy(_bundle())
    for entry in second["entry"]:  # a second patient, identical but for ids
        res = entry["resource"]
        res["id"] = res["id"].replace("v01-p1", "v01-p2")
        entry["fullUrl"] = entry["fullUrl"].replace("v01-p1", "v01-p2")
        if "subject" in res:
            res["subject"]["reference"] = "Patient/v01-p2"
    bundle["entry"].extend(second["entry"])
    for entry in bundle["entry"]:
        if entry["resource"]["id"] == "v01-p1-ki67":
            entry["resource"]["valueQuantity"]["value"] = "abc"
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(bundle))
    code, out, err = _run(capsys, "evaluate", str(path), "--as-of", AS_OF, "--format", "json")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("milan-fhir: warning: ")]
    assert len(warnings) == 1, err
    assert f"{path}:" in warnings[0] and "Observation/v01-p1-ki67" in warnings[0] and "field valueQuantity" in warnings[0]
    assert "Traceback" not in err
    results = {json.loads(line)["patient"]: json.loads(line) for line in out.splitlines()}
    assert set(results) == {"Patient/v01-p1", "Patient/v01-p2"}
    # the broken Ki-67 was skipped: p1 has no Ki-67 evidence, p2 still has its own
    assert "Observation/v01-p1-ki67" not in results["Patient/v01-p1"]["criteria"]["low_grade"]["evidence"]
    assert "Observation/v01-p2-ki67" in results["Patient/v01-p2"]["criteria"]["low_grade"]["evidence"]


def test_missing_file(capsys, tmp_path):
    missing = tmp_path / "nope.json"
    code, _, err = _run(capsys, "evaluate", str(missing))
    assert code == 2
    assert str(missing) in _one_error_line(err)


def test_empty_folder(capsys, tmp_path):
    code, _, err = _run(capsys, "evaluate", str(tmp_path))
    assert code == 2
    assert str(tmp_path) in _one_error_line(err)


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "15/01/2026"])
def test_bad_as_of(capsys, value):
    code, out, err = _run(capsys, "evaluate", str(FIXTURE), "--as-of", value)
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert "--as-of" in line and value in line


def test_unknown_rule_set(capsys):
    code, _, err = _run(capsys, "evaluate", str(FIXTURE), "--rule-set", "milan-1999")
    assert code == 2
    assert "milan-1999" in _one_error_line(err)


def test_missing_mapping_file(capsys, tmp_path):
    code, _, err = _run(capsys, "evaluate", str(FIXTURE), "--mappings", str(tmp_path / "local.yaml"))
    assert code == 2
    assert "local.yaml" in _one_error_line(err)


def test_usage_error_is_one_line(capsys):
    code, _, err = _run(capsys, "evaluate")
    assert code == 2
    assert "PATH" in _one_error_line(err)
    code, _, err = _run(capsys, "evaluate", str(FIXTURE), "--format", "xml")
    assert code == 2
    assert "--format" in _one_error_line(err)


def test_help_for_newcomers(capsys):
    code, out, _ = _run(capsys, "evaluate", "--help")
    assert code == 0
    assert "Milan criteria" in out and "examples:" in out and "--as-of" in out and "exit status" in out


def test_python_dash_m_bad_input_no_traceback(tmp_path):
    bad = tmp_path / "bad.ndjson"
    bad.write_text("this is not json\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "milan_fhir", "evaluate", str(bad), "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("milan-fhir: error: ") and str(bad) in proc.stderr
