"""Multi-megabyte pathological value strings must be read (as unusable) in linear time (issue 9).

The Ki-67, liver-burden and grade texts go through regular expressions in ``milan_fhir/_adapters/_values.py``
and ``_observation.py``; a backtracking pattern (``\\s*...\\s*`` around an optional group) takes minutes on a few
MB of blanks. Each case runs in a subprocess under a generous timeout (a hang guard, not a performance
assertion), and must report the value as unusable (or read a grade), never hang or crash. The work done is
asserted: the child prints one verdict per case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

TIMEOUT_S = 30  # linear work on these strings takes well under a second each
SIZE = 2_000_000  # characters

CASES = {
    "ki67-blanks-then-junk": ("ki67", " " * SIZE + "x"),
    "ki67-tabs-before-percent": ("ki67", "\t" * SIZE + "5 %x"),
    "ki67-comparator-then-blanks": ("ki67", "<" + " " * SIZE + "5x"),
    "ki67-digits-then-junk": ("ki67", "1" * SIZE + "%x"),
    "ki67-percent-then-blanks": ("ki67", "5%" + " " * SIZE + "x"),
    "ki67-dots": ("ki67", "1." * (SIZE // 2) + "x"),
    "ki67-ki67-prefix-repeated": ("ki67", "Ki-67 " * (SIZE // 6) + "x"),
    "burden-blanks-then-junk": ("liver_burden", " " * SIZE + "x"),
    "grade-blanks-after-g": ("histologic_grade", "G" + " " * SIZE + "x"),
    "grade-blanks-before": ("histologic_grade", " " * SIZE + "grade"),
    "grade-many-grades": ("histologic_grade", "G1-" * (SIZE // 3) + "x"),
    "grade-dashes": ("histologic_grade", "grade" + " -" * (SIZE // 2) + "x"),
}

CHILD = textwrap.dedent(
    """
    import json, sys
    from milan_fhir._adapters import adapt_resource
    from milan_fhir._mappings import default_mappings
    m = default_mappings()
    codes = {"ki67": ("http://loinc.org", "29593-1"), "histologic_grade": ("http://loinc.org", "21858-6"),
             "liver_burden": ("http://milan-fhir.org/fhir/CodeSystem/milan-net", "liver-tumor-burden")}
    for name, (concept, value) in json.loads(sys.stdin.read()).items():
        system, code = codes[concept]
        obs = {"resourceType": "Observation", "id": "x", "status": "final", "subject": {"reference": "Patient/p"},
               "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": "2025-01-01",
               "valueString": value}
        out = adapt_resource(obs, m)
        unusable = [u for u in out.unusable] if out else []
        reason_len = max([len(u.reason) for u in unusable] or [0])
        print(json.dumps({"case": name, "facts": len(out.facts) if out else 0, "unusable": len(unusable),
                          "reason_len": reason_len}), flush=True)
    """
)


def _run(cases: dict[str, tuple[str, str]]) -> list[dict]:
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cases), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        text = raw.decode() if isinstance(raw, bytes) else raw
        done = [json.loads(x) for x in text.splitlines() if x.strip()]
        finished = {d["case"] for d in done}
        hung = next(n for n in cases if n not in finished)
        pytest.fail(f"a hang: case {hung!r} ({len(cases[hung][1]):,} characters) did not finish in {TIMEOUT_S} s; "
                    f"finished before it: {sorted(finished)}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return [json.loads(x) for x in proc.stdout.splitlines()]


def test_pathological_value_strings_finish_and_are_unusable():
    results = _run(CASES)
    assert [r["case"] for r in results] == list(CASES)  # the work was done, case by case
    for r in results:
        concept = CASES[r["case"]][0]
        if concept == "histologic_grade":
            assert r["facts"] + r["unusable"] >= 1, r  # read as a grade (highest named) or reported unusable
        else:
            assert r["facts"] == 0 and r["unusable"] == 1, r  # never a number out of junk
        assert r["reason_len"] < 2_000, r  # a reason quotes a bounded excerpt, not megabytes


def test_short_value_strings_are_still_read():
    """The guard's baseline: the same child reads ordinary values (so a pass above is not an empty run)."""
    results = _run({"plain": ("ki67", "8 %"), "junk": ("ki67", "8-15%"), "grade": ("histologic_grade", "G2")})
    by = {r["case"]: r for r in results}
    assert by["plain"]["facts"] == 1 and by["plain"]["unusable"] == 0
    assert by["junk"]["unusable"] == 1
    assert by["grade"]["facts"] == 1
