"""The Spark engine's write-back against a real HAPI FHIR server: from the driver, in batches, with the cohort's
version-aware write-back; idempotent across engines (a local run after a Spark run writes nothing). Marked
``hapi``; everything written carries the session's run tag."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from milan_fhir._client import FhirClient, entry_error
from milan_fhir._cohort import run_cohort as local_cohort
from milan_fhir._writers import fhir as fhir_writer
from test_cohort import AS_OF, make_export
from test_cohort_hapi import _resources
from test_spark import spark  # noqa: F401 - the shared Spark session fixture

pytestmark = pytest.mark.hapi


def test_spark_write_back_in_batches_then_nothing_to_write(spark, hapi_base_url, fhir_run_tag, tmp_path):  # noqa: F811
    from milan_fhir import spark as ms

    prefix = "k" + fhir_run_tag.code[:9]  # its own ids: test_smart_hapi uses "s" + the same code
    generated = make_export(tmp_path / "generated", patients=12, resources=12, net_fraction=0.5, parts=1)
    resources = _resources(generated, prefix, fhir_run_tag)
    src = tmp_path / "src"
    src.mkdir()
    (src / "export.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    tag = (fhir_run_tag.system, fhir_run_tag.code)
    with FhirClient(hapi_base_url) as client:
        entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                   for r in resources]
        answer = client.transaction(entries, idempotent=True)
        assert all(entry_error(e, "upload") is None for e in answer.get("entry", []))

        wb = {"base_url": hapi_base_url, "tag": tag, "batch_size": 3}
        first = ms.run_cohort(spark, src, tmp_path / "spark", as_of=AS_OF, write_back=wb)
        n = first.patients
        assert n >= 3 and first["write_back"]["created"] == n and first["write_back"]["failed"] == 0, first["write_back"]
        log = [orjson.loads(ln) for ln in (tmp_path / "spark" / "write-back.ndjson").read_bytes().splitlines()]
        assert [r["patient"] for r in log] == sorted(r["patient"] for r in log) and len(log) == n
        for row in log:
            pid = row["patient"]
            value = fhir_writer.identifier_value(pid, first["rule_set"])
            found = list(client.search("RiskAssessment", {"identifier": f"{fhir_writer.IDENTIFIER_SYSTEM}|{value}"}))
            assert len(found) == 1 and found[0]["subject"]["reference"] == pid

        # the local engine, then Spark again: unchanged inputs, nothing written
        local = local_cohort(src, tmp_path / "local", as_of=AS_OF, workers=1, write_back=wb)
        assert local["write_back"]["unchanged"] == n and local["write_back"]["created"] == 0
        again = ms.run_cohort(spark, src, tmp_path / "spark", as_of=AS_OF, write_back=wb)
        assert again["write_back"]["unchanged"] == n and again["write_back"]["created"] == 0
        for name in ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson"):
            assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
