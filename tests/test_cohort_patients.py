"""Patients in the cohort engine: their R4B validation waits for the group step and runs only for patients who
are screened, with the same results and errors as an eager validation (``milan_fhir.evaluate``) for them."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

import milan_fhir
from milan_fhir._cohort import run_cohort
from milan_fhir._cohort._group import DUPLICATE_REASON
from milan_fhir._cohort._work import in_cohort

from test_cohort import make_export

AS_OF = "2026-01-15"
BAD_DATE = "1970-13-01"  # not a FHIR date (month 13): R4B rejects it; the generic guards do not look at birthDate


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _patient_lines(export: Path) -> dict[str, tuple[Path, int, dict]]:
    out = {}
    for f in sorted(export.glob("Patient*.ndjson")):
        for i, raw in enumerate(f.read_bytes().splitlines()):
            res = orjson.loads(raw)
            out[f"Patient/{res['id']}"] = (f, i, res)
    return out


def _rewrite(f: Path, edit) -> None:
    lines = f.read_bytes().splitlines()
    edit(lines)
    f.write_bytes(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A generated export where: cohort patient A's only Patient is invalid; cohort patient B has an invalid copy
    before its valid one; cohort patient C has two valid copies; patient D, outside the cohort, has an invalid
    Patient. Returns (export, {"A": ..., ...} patient references)."""
    export = make_export(tmp_path_factory.mktemp("damaged"))
    evs = milan_fhir.evaluate(export, as_of=AS_OF)
    inside = [ev.patient for ev in evs if in_cohort(ev.record)]
    outside = [ev.patient for ev in evs if not in_cohort(ev.record)]
    assert len(inside) >= 3 and outside
    who = {"A": inside[0], "B": inside[1], "C": inside[2], "D": outside[0]}
    pats = _patient_lines(export)
    for key in ("A", "D"):
        f, i, res = pats[who[key]]
        _rewrite(f, lambda lines, i=i, res=res: lines.__setitem__(i, orjson.dumps({**res, "birthDate": BAD_DATE})))
    f, i, res = pats[who["B"]]
    _rewrite(f, lambda lines: lines.insert(i, orjson.dumps({**res, "birthDate": BAD_DATE})))
    f, i, res = pats[who["C"]]
    _rewrite(f, lambda lines: lines.append(orjson.dumps(res)))
    return export, who


def _eager(export: Path) -> tuple[list, list[dict]]:
    problems: list = []
    evs = milan_fhir.evaluate(export, as_of=AS_OF, problems=problems)
    return evs, [{"file": p.file, "line": p.line, "resource": p.resource, "field": p.field, "reason": p.reason}
                 for p in problems]


def _patient_errors(errors: list[dict]) -> list[dict]:
    return [e for e in errors if (e["resource"] or "").startswith("Patient/")]


def test_all_patients_same_as_eager_validation(damaged, tmp_path):
    export, who = damaged
    evs, problems = _eager(export)
    summary = run_cohort(export, tmp_path, as_of=AS_OF, workers=1, all_patients=True, chunk_bytes=4096)
    assert _lines(tmp_path / "results.ndjson") == [milan_fhir.to_json(ev) for ev in evs]
    assert _lines(tmp_path / "risk-assessments.ndjson") == [milan_fhir.to_risk_assessment(ev) for ev in evs]
    errors = _lines(tmp_path / "errors.ndjson")
    bad = _patient_errors(errors)
    # A, the invalid copy of B, D: each reported once, naming the field; C's second copy is a duplicate
    invalid = [e for e in bad if e["reason"] != DUPLICATE_REASON]
    assert sorted(e["resource"] for e in invalid) == sorted([who["A"], who["B"], who["D"]])
    assert {e["field"] for e in invalid} == {"birthDate"}
    assert all(e["reason"].startswith("invalid Patient: ") and BAD_DATE in e["reason"] for e in invalid)
    assert [e["resource"] for e in bad if e["reason"] == DUPLICATE_REASON] == [who["C"]]
    # the eager path reports the same invalid Patients, at the same lines, in the same words
    assert sorted(map(orjson.dumps, invalid)) == sorted(
        orjson.dumps(p) for p in _patient_errors(problems) if p["reason"] != DUPLICATE_REASON)
    assert summary["patients_seen"] == len(evs)
    by_patient = {ev.patient: ev for ev in evs}
    assert str(by_patient[who["A"]].criteria["age"].status) == "indeterminate"  # its Patient did not count
    assert by_patient[who["B"]].record.demographics is not None  # its valid second copy counted


def test_cohort_validates_only_screened_patients(damaged, tmp_path):
    export, who = damaged
    evs, problems = _eager(export)
    expected = [ev for ev in evs if in_cohort(ev.record)]
    summary = run_cohort(export, tmp_path, as_of=AS_OF, workers=2, chunk_bytes=4096)
    assert _lines(tmp_path / "results.ndjson") == [milan_fhir.to_json(ev) for ev in expected]
    errors = _lines(tmp_path / "errors.ndjson")
    invalid = [e for e in _patient_errors(errors) if e["reason"] != DUPLICATE_REASON]
    # D is outside the cohort: its Patient is never validated, so not reported; A and B's bad copy are
    assert sorted(e["resource"] for e in invalid) == sorted([who["A"], who["B"]])
    eager_invalid = [p for p in _patient_errors(problems) if p["reason"] != DUPLICATE_REASON and p["resource"] != who["D"]]
    assert sorted(map(orjson.dumps, invalid)) == sorted(map(orjson.dumps, eager_invalid))
    # every other error is the eager path's, in file and line order
    others = [e for e in errors if e not in invalid]
    assert others == [p for p in problems if p["resource"] != who["D"] and p not in eager_invalid]
    # D is still a patient of the export: counted as seen even where its unvalidated Patient is all the rules
    # read of it (the eager path, which rejects that Patient, then has no record of D at all)
    assert summary["patients_seen"] == len(evs) + (who["D"] not in {ev.patient for ev in evs})
    assert who["D"] not in {ev.patient for ev in expected}


def test_errors_keep_the_order_of_a_one_line_bundle(tmp_path):
    """A Bundle on one NDJSON line: an invalid Patient entry, then the patient's primary NET, then an invalid
    Observation. The Patient's error (from the group step) still comes before the Observation's (the scan's)."""
    export = make_export(tmp_path / "src", patients=10, net_fraction=1.0)
    evs = milan_fhir.evaluate(export, as_of=AS_OF)
    ev = next(e for e in evs if e.record.primaries)
    primary_ref = ev.record.primaries[0].source.reference
    conditions = {f"Condition/{r['id']}": r for f in export.glob("Condition*.ndjson")
                  for r in map(orjson.loads, f.read_bytes().splitlines())}
    cond = copy.deepcopy(conditions[primary_ref])
    cond["id"], cond["subject"] = "zz-primary", {"reference": "Patient/zz"}
    patient = {"resourceType": "Patient", "id": "zz", "birthDate": BAD_DATE}
    obs = {"resourceType": "Observation", "id": "zz-ki67", "status": "final", "subject": {"reference": "Patient/zz"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
           "valueQuantity": {"value": "high", "unit": "%"}, "effectiveDateTime": "2025-01-01"}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": patient}, {"resource": cond}, {"resource": obs}]}
    (export / "Zbundle.ndjson").write_bytes(orjson.dumps(bundle) + b"\n")
    _evs, problems = _eager(export)
    run_cohort(export, tmp_path / "out", as_of=AS_OF, workers=1)
    zz = [e for e in _lines(tmp_path / "out" / "errors.ndjson") if "zz" in (e["resource"] or "")]
    assert [e["resource"] for e in zz] == ["Patient/zz", "Observation/zz-ki67"]
    assert zz == [p for p in problems if "zz" in (p["resource"] or "")]


def test_scan_spills_facts_in_frames_same_outputs(damaged, tmp_path, monkeypatch):
    """A chunk's facts are written out in frames when many are held (bounded memory): the outputs do not change."""
    from milan_fhir._cohort import _work

    export, _who = damaged
    run_cohort(export, tmp_path / "whole", as_of=AS_OF, workers=1, all_patients=True)
    monkeypatch.setattr(_work, "_SPILL_FACTS", 3)
    run_cohort(export, tmp_path / "framed", as_of=AS_OF, workers=1, all_patients=True)
    for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
        assert (tmp_path / "framed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert (tmp_path / "framed" / "errors.ndjson").read_bytes()  # the damaged Patients are in it
