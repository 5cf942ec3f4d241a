"""Stage 3 (optional): write the cohort's RiskAssessments back to a FHIR server, bucket by bucket.

For each batch of patients, one ``batch`` Bundle looks up their current RiskAssessments (by the deterministic
identifier of criteria.md §5); then each patient goes through the client's :func:`write_back` with what was
found: unchanged inputs write nothing, changed or new ones write the RiskAssessment and its Provenance in one
version-aware transaction. Re-running (or resuming) therefore never duplicates anything on the server.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import FhirConnectionError, FhirServerError
from ._work import _mappings, bucket_name, write_atomic

__all__ = ["WriteBackTask", "write_back_bucket", "ACTIONS"]

ACTIONS = ("created", "updated", "unchanged", "failed")


@dataclass(frozen=True)
class WriteBackTask:
    bucket: int
    workdir: str
    base_url: str
    token: str | None
    mapping_layers: tuple[str, ...]
    batch_size: int = 50
    tag: tuple[str, str] | None = None


def write_back_bucket(task: WriteBackTask) -> dict[str, int]:
    from .._client import FhirClient, entry_error
    from .._client._fetch import pick_current, ra_search
    from .._client._writeback import write_back

    wd = Path(task.workdir)
    name = bucket_name(task.bucket)
    evs = pickle.loads((wd / f"{name}.evals").read_bytes())
    mappings = _mappings(task.mapping_layers)
    counts = dict.fromkeys(ACTIONS, 0)
    lines: list[bytes] = []
    with FhirClient(task.base_url, token=task.token) as client:
        for start in range(0, len(evs), task.batch_size):
            batch = evs[start:start + task.batch_size]
            pids = [ev.patient.split("/", 1)[1] for ev in batch]
            entries = [{"request": {"method": "GET", "url": ra_search(pid, ev.rule_set)}} for pid, ev in zip(pids, batch)]
            answer = client.batch(entries)
            found_entries = answer.get("entry") or []
            for i, (pid, ev) in enumerate(zip(pids, batch)):
                kwargs: dict[str, Any] = {}
                entry = found_entries[i] if i < len(found_entries) else None
                if entry is not None and entry_error(entry, "RiskAssessment search", client.base_url) is None:
                    bundle = entry.get("resource") or {}
                    found = [e["resource"] for e in bundle.get("entry") or []
                             if (e.get("resource") or {}).get("resourceType") == "RiskAssessment"]
                    kwargs["current"] = pick_current(found, pid, ev.rule_set)
                rec: dict[str, Any] = {"patient": ev.patient, "rule_set": ev.rule_set}
                try:
                    res = write_back(client, ev, mappings, tag=task.tag, **kwargs)
                except FhirConnectionError:
                    raise
                except FhirServerError as exc:  # this patient failed; the others go on
                    counts["failed"] += 1
                    rec.update(action="failed", error=str(exc))
                else:
                    counts[res.action] += 1
                    rec.update(action=res.action, risk_assessment=res.risk_assessment, provenance=res.provenance)
                lines.append(ev.patient.encode("utf-8") + b"\t" + orjson.dumps(rec) + b"\n")
    write_atomic(wd / f"{name}.writeback", b"".join(lines))
    return counts
