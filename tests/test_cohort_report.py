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
