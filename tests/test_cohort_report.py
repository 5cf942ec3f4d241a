"""The cohort HTML report opens from disk in a real browser (headless Chromium) and shows the flow and the
per-criterion bars. Skipped only when Chromium is absent and CI is not set; with CI=true it must run."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from milan_fhir._cohort import run_cohort
from milan_fhir._cohort._report import COLOURS
from test_cohort import AS_OF, make_export

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str:
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail("Chromium is not installed and CI=true: install it (apt-get install -y chromium)", pytrace=False)
    pytest.skip("Chromium is not installed (apt-get install -y chromium)")


def _run(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into rows of RGB(A) bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def _count_colour(rows: list[bytes], bpp: int, hex_colour: str, tol: int = 12) -> int:
    r0, g0, b0 = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    n = 0
    for row in rows[::2]:
        for i in range(0, len(row), bpp * 2):
            if abs(row[i] - r0) <= tol and abs(row[i + 1] - g0) <= tol and abs(row[i + 2] - b0) <= tol:
                n += 1
    return n


def test_report_renders_flow_and_bars_in_chromium(tmp_path):
    browser = _chromium()
    export = make_export(tmp_path / "export")
    out = tmp_path / "out"
    summary = run_cohort(export, out, as_of=AS_OF, workers=1)
    report = out / "report.html"
    html = report.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")

    dom = _run(browser, tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    flow = re.search(r'<svg id="flow-chart".*?</svg>', text, re.S)
    bars = re.search(r'<svg id="criteria-chart".*?</svg>', text, re.S)
    assert flow and bars, "the rendered page lacks the flow or the criteria chart"
    t = summary["tally"]
    # the flow: one bar for the cohort, and a lost (red) segment for every criterion that lost patients
    assert len(re.findall(r'class="bar flow-lost"', flow.group(0))) == sum(1 for s in t["flow"] if s["lost"])
    assert len(re.findall(r'class="bar flow-excluded"', flow.group(0))) == sum(
        1 for s in t.get("caution_flow", []) if s["lost"])
    assert 'class="bar flow-eligible"' in flow.group(0) or t["verdicts"]["eligible"] == 0
    # the per-criterion stacked bars: one segment per non-zero (criterion, status)
    segments = re.findall(r'class="bar status-(met|not_met|indeterminate)"', bars.group(0))
    assert len(segments) == sum(1 for c in t["criteria"].values() for n in c.values() if n)

    shot = tmp_path / "report.png"
    res = _run(browser, tmp_path, "--window-size=1000,1500", f"--screenshot={shot}", report.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    width, bpp, rows = _png_pixels(shot.read_bytes())
    assert width == 1000
    # the chart colours are really painted: blue flow, red losses, green met, amber indeterminate
    for key in ("flow", "not_met", "met", "indeterminate"):
        assert _count_colour(rows, bpp, COLOURS[key]) > 50, f"no {key} colour ({COLOURS[key]}) on the screenshot"


# ------------------------------------------------------------------------------------ cautions in the flow (v2)
from milan_fhir._cohort import Tally, render_html, render_text  # noqa: E402
from milan_fhir._cohort._report import criterion_labels  # noqa: E402
from milan_fhir._domain import CRITERIA, Status  # noqa: E402
from milan_fhir._mappings import default_mappings  # noqa: E402

from _writer_samples import CAUTIONS, evaluation  # noqa: E402

MET = dict.fromkeys(CRITERIA, "met")


def _caution_rows():
    return [
        ("eligible", MET, []),
        ("ineligible", {**MET, "age": "not_met"}, ["deceased"]),  # leaves as deceased, not at age
        ("ineligible", MET, ["prior-liver-transplant", "prior-malignancy"]),
        ("indeterminate", MET, ["other-malignancy", "prior-malignancy"]),  # stays in, cannot be eligible
        ("eligible", MET, ["prior-malignancy"]),  # counted, not removed
        ("ineligible", {**MET, "liver_burden": "not_met"}, ["no-liver-metastasis-record"]),
    ]


def test_flow_removes_deceased_and_transplanted_first_and_counts_capping_cautions():
    t = Tally.of(_caution_rows())
    steps = {st["step"]: st for st in t.caution_flow()}
    assert [st["step"] for st in t.caution_flow()] == ["excluding", "capping", "informational"]
    assert steps["excluding"] == {"step": "excluding", "entering": 6, "lost": 2, "remaining": 4, "flagged": 0,
                                  "cautions": {"deceased": 1, "prior-liver-transplant": 1}}
    assert steps["capping"]["lost"] == 0 and steps["capping"]["remaining"] == 4
    assert steps["capping"]["flagged"] == 2
    assert steps["capping"]["cautions"] == {"no-liver-metastasis-record": 1, "other-malignancy": 1}
    # prior-malignancy: counted among the patients still in the flow, nobody removed
    assert steps["informational"] == {"step": "informational", "entering": 4, "lost": 0, "remaining": 4,
                                      "flagged": 2, "cautions": {"prior-malignancy": 2}}
    flow = {st["criterion"]: st for st in t.flow()}
    assert flow["age"]["entering"] == 4 and flow["age"]["lost"] == 0  # the deceased patient left before age
    assert flow["liver_burden"]["lost"] == 1
    assert t.flow()[-1]["remaining"] == t.verdicts["eligible"] + t.verdicts["indeterminate"] == 3
    # every patient once per code over the whole cohort, whatever the flow
    assert t.cautions == {"deceased": 1, "prior-liver-transplant": 1, "no-liver-metastasis-record": 1,
                          "other-malignancy": 1, "prior-malignancy": 3}
    assert t.criteria["age"]["not_met"] == 1  # the per-criterion counts still see the deceased patient
    rows = _caution_rows()
    merged = Tally.of(rows[:3])
    merged.merge(Tally.of(rows[3:]))
    assert merged.as_dict() == t.as_dict()


def test_add_evaluation_reads_verdict_statuses_and_cautions():
    t = Tally()
    t.add_evaluation(evaluation(cautions=[CAUTIONS["deceased"]]))
    t.add_evaluation(evaluation(statuses={"age": Status.NOT_MET}))
    t.add_evaluation(evaluation(cautions=[CAUTIONS["prior-malignancy"]]))
    assert t.verdicts == {"eligible": 1, "ineligible": 2, "indeterminate": 0}
    assert t.caution_flow()[0]["lost"] == 1 and t.flow()[0]["entering"] == 2 and t.flow()[0]["lost"] == 1
    assert t.cautions["prior-malignancy"] == 1


def _summary(t: Tally) -> dict:
    return {
        "as_of": "2026-01-15", "rule_set": "milan-net", "rule_set_version": "1.0.0", "mapping_version": "m@1",
        "lines": 60, "files": ["a.ndjson"], "resources_kept": 50, "errors": 0, "patients_seen": 6,
        "cohort_definition": "NET", "criterion_labels": criterion_labels(default_mappings().rule_set()),
        "tally": t.as_dict(),
    }


def test_text_summary_shows_the_caution_steps_before_the_criteria():
    out = render_text(_summary(Tally.of(_caution_rows())))
    lines = out.splitlines()
    excluded = next(i for i, line in enumerate(lines) if "deceased or prior liver transplant" in line)
    capped = next(i for i, line in enumerate(lines) if "capping caution (stay in" in line)
    age = next(i for i, line in enumerate(lines) if "age at most 60 years" in line)
    assert excluded < capped < age
    assert lines[excluded].split()[0] == "-2" and "deceased 1, prior liver transplant 1" in lines[excluded]
    assert lines[capped].split()[0] == "!2"
    assert "Cautions over the whole cohort: deceased 1" in out and "prior malignancy 3" in out


def test_html_report_has_caution_steps_and_the_cautions_table():
    html = render_html(_summary(Tally.of(_caution_rows())))
    flow = re.search(r'<svg id="flow-chart".*?</svg>', html, re.S).group(0)
    assert len(re.findall(r'class="bar flow-excluded"', flow)) == 1  # only the excluding step removes patients
    assert len(re.findall(r'class="bar flow-capped"', flow)) == 2  # capping and informational flag, stay in
    assert html.count('<tr class="caution-step">') == 3
    table = re.search(r'<table id="cautions-table">.*?</table>', html, re.S).group(0)
    assert table.count("<tr>") == 1 + 5  # header + one row per caution code
    assert "<td>Prior malignancy</td><td>3</td>" in table
    assert "<script" not in html
