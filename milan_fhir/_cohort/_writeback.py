"""Stage 3 (optional): write the cohort's RiskAssessments back to a FHIR server, bucket by bucket.

For each batch of patients, one ``batch`` Bundle looks up their current RiskAssessments (by the deterministic
identifier of criteria.md §5; the answers are matched to patients by the identifier and subject of the
resources they hold, never by position); then each patient goes through the client's :func:`write_back` with what was
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

__all__ = ["WriteBackTask", "write_back_bucket", "write_back_evaluations", "ACTIONS"]

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
    from .._client import FhirClient

    wd = Path(task.workdir)
    name = bucket_name(task.bucket)
    evs = pickle.loads((wd / f"{name}.evals").read_bytes())
    mappings = _mappings(task.mapping_layers)
    with FhirClient(task.base_url, token=task.token) as client:
        counts, lines = write_back_evaluations(client, evs, mappings, batch_size=task.batch_size, tag=task.tag)
    write_atomic(wd / f"{name}.writeback", b"".join(lines))
    return counts


def write_back_evaluations(client: Any, evs: list[Any], mappings: Any, *, batch_size: int = 50,
                           tag: tuple[str, str] | None = None) -> tuple[dict[str, int], list[bytes]]:
    """Write ``evs`` back through ``client`` in batches of ``batch_size`` patients (one lookup ``batch`` each);
    returns the counts per action and the ``write-back.ndjson`` lines (``patient\\tjson\\n``), in the order of
    ``evs``. Shared by the local engine (per bucket) and the Spark engine (from the driver)."""
    from .._client import entry_error, next_link
    from .._client._fetch import pick_current, ra_search
    from .._client._writeback import write_back
    from .._writers.fhir import IDENTIFIER_SYSTEM, identifier_value

    counts = dict.fromkeys(ACTIONS, 0)
    lines: list[bytes] = []
    for start in range(0, len(evs), batch_size):
        batch = evs[start:start + batch_size]
        pids = [ev.patient.split("/", 1)[1] for ev in batch]
        entries = [{"request": {"method": "GET", "url": ra_search(pid, ev.rule_set)}} for pid, ev in zip(pids, batch)]
        answer = client.batch(entries)
        # the answers are matched to patients by the identifier and subject of what they hold, never by
        # position: a server that reorders or ignores the identifier parameter cannot cross patients
        found_entries = answer.get("entry") if isinstance(answer.get("entry"), list) else []
        complete = len(found_entries) == len(batch)
        by_value: dict[str, list[dict[str, Any]]] = {}
        for entry in found_entries:
            if not isinstance(entry, dict) or entry_error(entry, "RiskAssessment search", client.base_url) is not None:
                complete = False
                continue
            bundle = entry.get("resource") or {}
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                complete = False
                continue
            if next_link(bundle):
                complete = False  # more pages: let write_back look this patient up itself
            for e in bundle.get("entry") or []:
                res = e.get("resource") if isinstance(e, dict) else None
                if isinstance(res, dict) and res.get("resourceType") == "RiskAssessment":
                    for ident in res.get("identifier") or []:
                        if isinstance(ident, dict) and ident.get("system") == IDENTIFIER_SYSTEM:
                            by_value.setdefault(str(ident.get("value")), []).append(res)
        for pid, ev in zip(pids, batch):
            kwargs: dict[str, Any] = {}
            mine = by_value.get(identifier_value(ev.patient, ev.rule_set), [])
            current = pick_current(mine, pid, ev.rule_set)
            if current is not None or complete:
                # found, or known absent (every answer came back whole); otherwise write_back looks it up
                kwargs["current"] = current
            rec: dict[str, Any] = {"patient": ev.patient, "rule_set": ev.rule_set}
            try:
                res = write_back(client, ev, mappings, tag=tag, **kwargs)
            except FhirConnectionError:
                raise
            except FhirServerError as exc:  # this patient failed; the others go on
                counts["failed"] += 1
                rec.update(action="failed", error=str(exc))
            else:
                counts[res.action] += 1
                rec.update(action=res.action, risk_assessment=res.risk_assessment, provenance=res.provenance)
                if res.note:
                    rec["note"] = res.note
            lines.append(ev.patient.encode("utf-8") + b"\t" + orjson.dumps(rec) + b"\n")
    return counts, lines
