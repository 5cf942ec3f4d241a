"""Cohort against a real HAPI FHIR server: upload a small cohort, Group $export, evaluate, write back (twice:
the second write-back writes nothing). Marked ``hapi``; everything written carries the session's run tag."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import milan_fhir
from milan_fhir._client import FhirClient, entry_error
from milan_fhir._cohort import run_cohort
from milan_fhir._cohort._export import bulk_export
from milan_fhir._writers import fhir as fhir_writer
from test_cohort import AS_OF, make_export

pytestmark = pytest.mark.hapi

RULE_TYPES = ("Patient", "Condition", "Observation", "Procedure")


def _resources(folder: Path, prefix: str, tag) -> list[dict]:
    """The generated export's rule-relevant resources, ids made unique to this run, tagged; references to
    resources we do not upload (encounters, organisations) removed."""
    out = []
    for f in sorted(folder.iterdir()):
        if f.name.split("-")[0].split(".")[0] not in RULE_TYPES:
            continue
        for line in f.read_bytes().splitlines():
            line = line.replace(b"p07-", f"p{prefix}-".encode())
            res = orjson.loads(line)
            res.pop("encounter", None)
            res.pop("performer", None)
            if res["resourceType"] != "Patient" and not res["id"].startswith(f"p{prefix}-"):
                res["id"] = f"{prefix}-{res['id'][:40]}"
            res.pop("meta", None)
            tag.apply(res)
            out.append(res)
    return out


def _verdicts(path: Path) -> dict[str, tuple]:
    rows = [orjson.loads(l) for l in path.read_bytes().splitlines()]
    return {r["patient"]: (r["verdict"], tuple(c["status"] for c in r["criteria"].values())) for r in rows}


def test_cohort_export_evaluate_write_back(hapi_base_url, fhir_run_tag, tmp_path):
    prefix = fhir_run_tag.code[:10]
    generated = make_export(tmp_path / "generated", patients=12, resources=12, net_fraction=0.5, parts=1)
    resources = _resources(generated, prefix, fhir_run_tag)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    group = fhir_run_tag.apply({
        "resourceType": "Group", "id": f"cohort-{prefix}", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p['id']}"}} for p in patients],
    })
    tag = (fhir_run_tag.system, fhir_run_tag.code)
    with FhirClient(hapi_base_url) as client:
        entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                   for r in [*resources, group]]
        answer = client.transaction(entries, idempotent=True)
        assert all(entry_error(e, "upload") is None for e in answer.get("entry", []))

        export = bulk_export(client, tmp_path / "out" / "export", group=group["id"], poll_cap=5.0, timeout=300,
                             log=lambda m: None)
        try:
            assert {p.name.split("-")[0] for p in export.files} >= {"Patient", "Condition", "Observation"}
            wb = {"base_url": hapi_base_url, "tag": tag, "batch_size": 5}
            summary = run_cohort(tmp_path / "out" / "export", tmp_path / "out", as_of=AS_OF, workers=2,
                                 write_back=wb)
        finally:
            for url in export.urls:  # the export files are Binary resources on the server
                try:
                    client.request("DELETE", url)
                except milan_fhir.errors.MilanFhirError:
                    pass

        # the same verdicts as evaluating what we uploaded, locally
        local = [ev for ev in milan_fhir.evaluate(resources, as_of=AS_OF)
                 if ev.record.primaries or any(m.location == "liver" for m in ev.record.metastases)]
        assert len(local) == summary["tally"]["patients"] >= 3
        got = _verdicts(tmp_path / "out" / "results.ndjson")
        want = {ev.patient: (str(ev.verdict), tuple(str(r.status) for r in ev.criteria.values())) for ev in local}
        assert got == want
        assert summary["write_back"]["created"] == len(local) and summary["write_back"]["failed"] == 0

        # one RiskAssessment per patient on the server, found by its identifier
        for ev in local:
            value = fhir_writer.identifier_value(ev.patient, ev.rule_set)
            found = list(client.search("RiskAssessment", {"identifier": f"{fhir_writer.IDENTIFIER_SYSTEM}|{value}"}))
            assert len(found) == 1 and found[0]["subject"]["reference"] == ev.patient

        # evaluating and writing back again (unchanged inputs) writes nothing
        again = run_cohort(tmp_path / "out" / "export", tmp_path / "out", as_of=AS_OF, workers=1, write_back=wb)
        assert again["write_back"]["unchanged"] == len(local) and again["write_back"]["created"] == 0
        log = [orjson.loads(l) for l in (tmp_path / "out" / "write-back.ndjson").read_bytes().splitlines()]
        assert sorted(r["patient"] for r in log) == sorted(ev.patient for ev in local)
