"""Benchmark: reading one patient from a FHIR server, by strategy (issue 3).

    python benchmarks/bench_fetch.py [--base-url URL] [--noise 1000] [--repeat 5]

A patient is uploaded with the relevant resources of fixture 01 (the complete eligible work-up) plus ``--noise``
irrelevant Observations (vital signs, labs); everything is tagged and deleted again at the end. Then, per
strategy, interleaved, ``--repeat`` times each, with a fresh client per run (its CapabilityStatement read
counts too):

  naive       per-type searches without code filters (Observation, Condition, Procedure), paged, + Patient read
  batch       one batch Bundle of code-filtered searches (the default where the server offers batch)
  everything  Patient/$everything, paged, filtered locally
  auto        what milan-fhir picks from the CapabilityStatement

Prints requests and median wall time per patient for each, and the ratios against the naive baseline; checks
that every strategy yields the same evaluation.

Server: ``--base-url``, else ``$MILAN_FHIR_BASE_URL``, else the local test server of ``tests/hapi-server``
started the same way as the pytest fixture (built if needed, stopped at the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STRATEGIES = ("naive", "batch", "everything", "auto")
AS_OF = "2026-06-30"
TAG_SYSTEM = "http://milan-fhir.org/fhir/CodeSystem/test-run"
NOISE_CODES = [
    ("8867-4", "Heart rate", "/min"), ("8310-5", "Body temperature", "Cel"), ("2345-7", "Glucose", "mg/dL"),
    ("718-7", "Hemoglobin", "g/dL"), ("2160-0", "Creatinine", "mg/dL"), ("29463-7", "Body weight", "kg"),
]


def _patient_bundle(prefix: str, noise: int) -> dict:
    import orjson

    src = orjson.loads((ROOT / "fixtures" / "01-ileal-net-eligible.json").read_bytes())
    ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in src["entry"]}

    def fix(node):
        if isinstance(node, dict):
            for k, v in list(node.items()):
                if k == "reference" and isinstance(v, str) and v.split("/fhir/")[-1] in ids:
                    rtype, rid = v.split("/fhir/")[-1].split("/", 1)
                    node[k] = f"{rtype}/{prefix}-{rid}"
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)
        return node

    entries = []
    pid = None
    for e in src["entry"]:
        res = fix(orjson.loads(orjson.dumps(e["resource"])))
        res["id"] = f"{prefix}-{res['id']}"
        if res["resourceType"] == "Patient" and pid is None:
            pid = res["id"]
        entries.append({"resource": res})
    for i in range(noise):
        code, display, unit = NOISE_CODES[i % len(NOISE_CODES)]
        entries.append({"resource": {
            "resourceType": "Observation", "id": f"{prefix}-noise-{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "valueQuantity": {"value": 50 + i % 40, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        }})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, pid


def _comparable(ev) -> tuple:
    return (str(ev.verdict), tuple((n, str(r.status)) for n, r in sorted(ev.criteria.items())))


def run(base_url: str, noise: int, repeat: int) -> int:
    import hapi
    from milan_fhir import default_mappings
    from milan_fhir._adapters import build_records
    from milan_fhir._client import FhirClient
    from milan_fhir._client._fetch import fetch_patient
    from milan_fhir._client._upload import upload_bundle
    from milan_fhir._evaluate import evaluate_record
    import datetime as dt

    m = default_mappings()
    rules = m.rule_set()
    tag = (TAG_SYSTEM, "bench-" + uuid.uuid4().hex)
    prefix = "b" + uuid.uuid4().hex[:8]
    bundle, pid = _patient_bundle(prefix, noise)
    with FhirClient(base_url, timeout=300) as c:
        t = time.perf_counter()
        upload_bundle(c, bundle, tag=tag)
        print(f"uploaded Patient/{pid}: {len(bundle['entry'])} resources ({noise} irrelevant Observations) "
              f"in {time.perf_counter() - t:.1f} s")
    results: dict[str, list[tuple[int, float, int]]] = {s: [] for s in STRATEGIES}
    outcomes: dict[str, set] = {s: set() for s in STRATEGIES}
    try:
        for s in STRATEGIES:  # warm-up: server caches and JIT, not measured
            with FhirClient(base_url, timeout=300) as c:
                fetch_patient(c, pid, m, strategy=s)
        for _ in range(repeat):
            for s in STRATEGIES:
                with FhirClient(base_url, timeout=300) as c:
                    t = time.perf_counter()
                    got = fetch_patient(c, pid, m, strategy=s)
                    secs = time.perf_counter() - t
                    results[s].append((c.request_count, secs, len(got.resources)))
                problems: list = []
                rec = build_records(got.resources, m, problems, patient=got.patient)[got.patient]
                outcomes[s].add(_comparable(evaluate_record(rec, rules, dt.date.fromisoformat(AS_OF), m.version)))
    finally:
        try:
            print("cleaning up:", {k: len(v) for k, v in hapi.purge(base_url, tag)["deleted"].items()})
        except Exception as exc:  # noqa: BLE001
            print(f"cleaning up failed ({exc!r}); resources tagged {tag[0]}|{tag[1]} remain", file=sys.stderr)

    base_req = statistics.median(r[0] for r in results["naive"])
    base_secs = statistics.median(r[1] for r in results["naive"])
    print(f"\nper patient, median of {repeat} runs (fresh client each: the CapabilityStatement read counts)")
    print(f"{'strategy':<11} {'requests':>8} {'wall ms':>9} {'resources':>9} {'requests vs naive':>18} {'time vs naive':>14}")
    for s in STRATEGIES:
        req = statistics.median(r[0] for r in results[s])
        secs = statistics.median(r[1] for r in results[s])
        n = statistics.median(r[2] for r in results[s])
        print(f"{s:<11} {req:>8.0f} {secs * 1000:>9.1f} {n:>9.0f} {req / base_req:>17.2f}x {secs / base_secs:>13.2f}x")
    same = len(set().union(*outcomes.values())) == 1
    print(f"\nsame evaluation from every strategy: {'yes' if same else 'NO'}")
    auto_req = statistics.median(r[0] for r in results["auto"])
    print(f"default (auto) requests to read a patient: {auto_req:.0f} (target <= 2)")
    return 0 if same and auto_req <= 2 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default=os.environ.get("MILAN_FHIR_BASE_URL"))
    ap.add_argument("--noise", type=int, default=1000, help="irrelevant Observations of the patient (1000)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.base_url:
        return run(args.base_url.rstrip("/"), args.noise, args.repeat)
    import hapi

    hapi.build_jar()
    with hapi.LocalHapiServer() as server:
        print(f"local HAPI FHIR server {server.base_url} (started in {server.startup_seconds:.0f} s)")
        return run(server.base_url, args.noise, args.repeat)


if __name__ == "__main__":
    raise SystemExit(main())
