"""The clinical vignettes in ``fixtures/``: every Bundle against its hand-derived expectation.

Each ``fixtures/NN-name.json`` (a FHIR R4 Bundle) has ``fixtures/NN-name.expected.yaml`` beside it: ``as_of``,
``rule_set`` and, per patient, the verdict, the status of every criterion (criteria.md §1-§4) and ``cautions``
(the set of caution codes of criteria.md §1c, possibly empty); optionally ``evidence_includes`` (references that
must appear in a criterion's evidence), ``ignored_includes`` (references that must appear in the patient's
``ignored`` list: read but not counted, e.g. "about Condition/x, not the NET") and ``caution_evidence_includes``
(references that must appear in a caution's evidence). The expectations are the oracle; they are never computed
from the library.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.bundle import Bundle

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECTATIONS = sorted(FIXTURES.glob("*.expected.yaml"))
CRITERIA = ("age", "low_grade", "liver_burden", "primary_resected_portal", "stable_disease", "no_extrahepatic_disease")
STATUSES = {"met", "not_met", "indeterminate"}
VERDICTS = {"eligible", "ineligible", "indeterminate"}
CAUTIONS = ("deceased", "prior-liver-transplant", "no-liver-metastasis-record", "other-malignancy", "prior-malignancy")
EXCLUDING = {"deceased", "prior-liver-transplant"}  # criteria.md §1c: the verdict is ineligible
CAPPING = {"no-liver-metastasis-record", "other-malignancy"}  # criteria.md §1c: at most indeterminate


def _bundle_path(expected: Path) -> Path:
    return expected.with_name(expected.name.removesuffix(".expected.yaml") + ".json")


def _load_expectation(expected: Path) -> dict:
    return yaml.safe_load(expected.read_text())


def _ids(paths: list[Path]) -> list[str]:
    return [p.name.removesuffix(".expected.yaml") for p in paths]


def _resolve(reference: str, full_urls: dict[str, str]) -> str | None:
    """A Bundle reference (relative, absolute URL, urn:uuid) -> ``Type/id``."""
    if reference in full_urls:
        return full_urls[reference]
    parts = reference.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _bundle_patients(bundle: dict) -> set[str]:
    """Every patient the Bundle holds or its resources point at (subject / patient)."""
    full_urls = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "fullUrl" in e and "resource" in e and "id" in e["resource"]
    }
    out: set[str] = set()
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        if res["resourceType"] == "Patient":
            out.add(f"Patient/{res['id']}")
        for field in ("subject", "patient"):
            ref = (res.get(field) or {}).get("reference")
            if ref:
                resolved = _resolve(ref, full_urls)
                if resolved and resolved.startswith("Patient/"):
                    out.add(resolved)
    return out


def _verdict_from(criteria: dict[str, str], cautions: list[str]) -> str:
    """criteria.md §2 with §1c: a not_met criterion or an excluding caution makes it ineligible; eligible needs
    every criterion met and no capping caution (prior-malignancy is informational)."""
    values = set(criteria.values())
    if "not_met" in values or EXCLUDING & set(cautions):
        return "ineligible"
    return "eligible" if values == {"met"} and not CAPPING & set(cautions) else "indeterminate"


# ---- the fixture files themselves --------------------------------------------------------------------------


def test_enough_vignettes_each_with_a_bundle():
    assert len(EXPECTATIONS) >= 67, f"only {len(EXPECTATIONS)} vignettes in {FIXTURES}"
    bundles = sorted(p for p in FIXTURES.glob("*.json"))
    missing = [p.name for p in EXPECTATIONS if not _bundle_path(p).exists()]
    orphans = [p.name for p in bundles if not p.with_name(p.stem + ".expected.yaml").exists()]
    assert not missing, f"expectations without a Bundle: {missing}"
    assert not orphans, f"Bundles without an expectation: {orphans}"


def test_readme_lists_every_vignette():
    readme = (FIXTURES / "README.md").read_text()
    absent = [stem for stem in _ids(EXPECTATIONS) if f"`{stem}`" not in readme]
    assert not absent, f"fixtures/README.md does not list {absent}"


@pytest.mark.parametrize("expected", EXPECTATIONS, ids=_ids(EXPECTATIONS))
def test_expectation_is_well_formed(expected: Path):
    text = expected.read_text()
    assert text.startswith("# ") and len(text.splitlines()[0]) > 20, f"{expected.name}: first line must be the story"
    exp = _load_expectation(expected)
    assert exp["as_of"] == dt.date(2026, 6, 30), f"{expected.name}: as_of must be 2026-06-30"
    assert exp["rule_set"] in {"milan-net", "milan-2007"}
    assert exp["patients"], f"{expected.name}: no patients"
    for patient, e in exp["patients"].items():
        assert patient.startswith("Patient/"), f"{expected.name}: {patient} is not a Patient reference"
        assert e["verdict"] in VERDICTS, f"{expected.name} {patient}: verdict {e['verdict']!r}"
        assert tuple(e["criteria"]) == CRITERIA, f"{expected.name} {patient}: criteria must be exactly {CRITERIA}"
        assert set(e["criteria"].values()) <= STATUSES, f"{expected.name} {patient}: {e['criteria']}"
        assert isinstance(e.get("cautions"), list), f"{expected.name} {patient}: `cautions: [...]` is required"
        assert set(e["cautions"]) <= set(CAUTIONS) and len(set(e["cautions"])) == len(e["cautions"]), (
            f"{expected.name} {patient}: cautions {e['cautions']} (known: {CAUTIONS})"
        )
        assert e["verdict"] == _verdict_from(e["criteria"], e["cautions"]), (
            f"{expected.name} {patient}: verdict {e['verdict']} does not follow from {e['criteria']} and cautions "
            f"{e['cautions']} (criteria.md §2, §1c)"
        )
        for name in e.get("evidence_includes", {}) or {}:
            assert name in CRITERIA, f"{expected.name} {patient}: evidence_includes names unknown criterion {name}"
        for code in e.get("caution_evidence_includes", {}) or {}:
            assert code in e["cautions"], f"{expected.name} {patient}: evidence for caution {code} not expected"
        for ref in e.get("ignored_includes", []) or []:
            assert "/" in ref, f"{expected.name} {patient}: ignored_includes {ref!r} is not Type/id"


@pytest.mark.parametrize("expected", EXPECTATIONS, ids=_ids(EXPECTATIONS))
def test_bundle_is_valid_r4_with_ids_and_versions(expected: Path):
    path = _bundle_path(expected)
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n", f"{path.name}: not pretty-printed (2 spaces)"
    Bundle.model_validate(data)  # raises with the failing field if the Bundle is not valid R4
    assert data["type"] in {"collection", "transaction"}, f"{path.name}: Bundle.type {data['type']}"
    assert data.get("entry"), f"{path.name}: empty Bundle"
    faults = []
    seen: set[str] = set()
    for i, entry in enumerate(data["entry"]):
        res = entry["resource"]
        where = f"entry[{i}] {res.get('resourceType')}/{res.get('id')}"
        if f"{res.get('resourceType')}/{res.get('id')}" in seen:
            faults.append(f"{where}: the same resource id twice")
        seen.add(f"{res.get('resourceType')}/{res.get('id')}")
        if not res.get("id"):
            faults.append(f"{where}: no id")
        if not (res.get("meta") or {}).get("versionId"):
            faults.append(f"{where}: no meta.versionId")
        if "fullUrl" not in entry:
            faults.append(f"{where}: no fullUrl")
        if data["type"] == "transaction" and "request" not in entry:
            faults.append(f"{where}: transaction entry without request")
    assert not faults, f"{path.name}: " + "; ".join(faults)


@pytest.mark.parametrize("expected", EXPECTATIONS, ids=_ids(EXPECTATIONS))
def test_expectation_covers_every_patient(expected: Path):
    bundle = json.loads(_bundle_path(expected).read_text())
    in_bundle = _bundle_patients(bundle)
    expected_patients = set(_load_expectation(expected)["patients"])
    assert in_bundle == expected_patients, (
        f"{expected.name}: Bundle patients {sorted(in_bundle)} != expected {sorted(expected_patients)}"
    )


# ---- the library against the vignettes ---------------------------------------------------------------------


def _describe(result) -> str:
    evidence = ", ".join(
        f"{s.reference}" + (f" [{s.value}]" if s.value else "") + (f" @{s.date}" if s.date else "")
        for s in result.evidence
    )
    return f"{result.status}: {result.reason} (evidence: {evidence or 'none'})"


@pytest.mark.parametrize("expected", EXPECTATIONS, ids=_ids(EXPECTATIONS))
def test_vignette(expected: Path):
    import milan_fhir

    exp = _load_expectation(expected)
    evaluations = milan_fhir.evaluate(str(_bundle_path(expected)), as_of=exp["as_of"], rule_set=exp["rule_set"])
    by_patient = {ev.patient: ev for ev in evaluations}
    assert len(by_patient) == len(evaluations), f"{expected.name}: a patient evaluated twice: {list(by_patient)}"
    assert set(by_patient) == set(exp["patients"]), (
        f"{expected.name}: evaluated {sorted(by_patient)}, expected {sorted(exp['patients'])}"
    )

    failures: list[str] = []
    for patient, e in exp["patients"].items():
        ev = by_patient[patient]
        assert str(ev.rule_set) == exp["rule_set"] and ev.as_of == exp["as_of"]
        for name in CRITERIA:
            result = ev.criteria[name]
            want = e["criteria"][name]
            if str(result.status) != want:
                failures.append(f"{patient} {name}: expected {want}, got {_describe(result)}")
            elif str(result.status) in {"met", "not_met"} and not result.evidence:
                failures.append(f"{patient} {name}: {result.status} without evidence ({result.reason})")
        for name, refs in (e.get("evidence_includes") or {}).items():
            got = {s.reference for s in ev.criteria[name].evidence}
            lacking = [r for r in refs if r not in got]
            if lacking:
                failures.append(f"{patient} {name}: evidence lacks {lacking}; got {_describe(ev.criteria[name])}")
        got_cautions = [c.code for c in ev.cautions]
        if sorted(got_cautions) != sorted(e["cautions"]):
            detail = "; ".join(f"{c.code}: {c.reason}" for c in ev.cautions) or "none"
            failures.append(f"{patient}: cautions expected {e['cautions']}, got {got_cautions} ({detail})")
        for c in ev.cautions:
            if not c.reason:
                failures.append(f"{patient}: caution {c.code} without a reason")
            if c.code != "no-liver-metastasis-record" and not c.evidence:
                # every other caution rests on a resource that shows it (criteria.md §1c: {code, reason, evidence})
                failures.append(f"{patient}: caution {c.code} without evidence ({c.reason})")
        by_code = {c.code: c for c in ev.cautions}
        for code, refs in (e.get("caution_evidence_includes") or {}).items():
            got = {s.reference for s in by_code[code].evidence} if code in by_code else set()
            lacking = [r for r in refs if r not in got]
            if lacking:
                failures.append(f"{patient} caution {code}: evidence lacks {lacking}; got {sorted(got)}")
        ignored = {i.reference for i in ev.ignored}
        lacking = [r for r in (e.get("ignored_includes") or []) if r not in ignored]
        if lacking:
            failures.append(f"{patient}: ignored lacks {lacking}; got "
                            + "; ".join(f"{i.reference} ({i.reason})" for i in ev.ignored))
        if str(ev.verdict) != e["verdict"]:
            failures.append(f"{patient}: verdict expected {e['verdict']}, got {ev.verdict}")
    story = expected.read_text().splitlines()[0]
    assert not failures, f"{expected.name} {story}\n  " + "\n  ".join(failures)
