"""The hostile-input corpus of issue 9, generated (nothing binary or huge is kept in the repository).

Each :class:`Case` is a small set of files (bytes, or a special entry: a symbolic link, a named pipe) built
around one clean vignette (``fixtures/01-ileal-net-eligible.json``, an eligible patient), with the report it must
produce. ``python tests/hostile/corpus.py OUT`` writes every case into ``OUT/<case>/`` to try by hand:

    milan-fhir evaluate OUT/<case>/ --as-of 2026-06-30
    milan-fhir cohort OUT/<case>/ --out /tmp/x --all-patients --as-of 2026-06-30
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VIGNETTE = ROOT / "fixtures" / "01-ileal-net-eligible.json"
AS_OF = "2026-06-30"


@dataclass(frozen=True)
class Link:
    target: str  # relative to the case folder


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass
class Case:
    name: str
    files: dict[str, Any]  # name -> bytes | Link | Fifo
    expect: list[str]  # substrings that must appear in the reports (stderr / errors.ndjson), case-insensitive
    fatal_alone: bool = False  # evaluate of the hostile file alone exits 2 (nothing readable in it)
    env: dict[str, str] = field(default_factory=dict)
    hostile: str | None = None  # the file that is the hostile one (default: the only or first file)
    expect_alone: list[str] | None = None  # what the hostile file alone must report (default: ``expect``)

    @property
    def clean(self) -> bool:
        """A case that must report nothing: the vignette is read in full (and stays eligible) by both paths."""
        return not self.expect

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            p = folder / name
            if isinstance(content, Link):
                os.symlink(content.target, p)
            elif isinstance(content, Fifo):
                os.mkfifo(p)
            else:
                p.write_bytes(content)
        return folder

    @property
    def hostile_file(self) -> str:
        return self.hostile or next(iter(self.files))


def vignette() -> list[dict[str, Any]]:
    """The resources of the clean vignette (fresh copies)."""
    return [e["resource"] for e in json.loads(VIGNETTE.read_bytes())["entry"]]


def _by_id(resources: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return next(r for r in resources if r["id"].endswith(suffix))


def ndjson(resources: list[Any]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in resources)


def pretty_bundle(resources: list[dict[str, Any]], *, full_urls: bool = True) -> bytes:
    entries = [({"fullUrl": f"urn:uuid:{r.get('id', f'no-id-{i}')}"} if full_urls else {}) | {"resource": r}
               for i, r in enumerate(resources)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}, indent=2).encode()


def _nested_extension(depth: int) -> dict[str, Any]:
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "deep"}
    for _ in range(depth):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    return ext


def _ki67_with(**changes: Any) -> list[dict[str, Any]]:
    res = vignette()
    ki = _by_id(res, "-ki67")
    for k, v in changes.items():
        if v is None:
            ki.pop(k, None)
        else:
            ki[k] = v
    return res


def _without(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    for k in keys:
        out.pop(k, None)
    return out


def cases() -> list[Case]:
    out: list[Case] = []
    add = out.append

    # ---- tracebacks: dates out of range, deep nesting, control characters
    add(Case("date-before-year-1", {"p.ndjson": ndjson(_ki67_with(effectiveDateTime="0001-01-01T00:30:00+01:00"))},
             ["effectiveDateTime", "not a usable date"]))
    add(Case("date-after-year-9999", {"p.ndjson": ndjson(_ki67_with(effectiveDateTime="9999-12-31T23:00:00-05:00"))},
             ["effectiveDateTime", "not a usable date"]))
    res = vignette()
    _by_id(res, "-resection")["performedPeriod"] = {"start": "2020-01-01", "end": "9999-12-31T22:00:00-03:00"}
    add(Case("period-end-after-9999", {"p.ndjson": ndjson(res)}, ["performedPeriod.end"]))
    add(Case("nested-extensions-300", {"p.ndjson": ndjson(_ki67_with(extension=[_nested_extension(300)]))},
             ["nested deeper than 64"]))
    deep = (b'{"resourceType":"Observation","id":"deep","code":{"coding":[{"system":"http://loinc.org","code":"29593-1"}]},'
            b'"extension":' + b"[" * 2000 + b"]" * 2000 + b"}\n")
    add(Case("nested-2000-levels-json", {"p.ndjson": ndjson(vignette()) + deep}, ["not valid JSON"]))
    for name, ref in (("tab", "Patient/v01-p1\tx"), ("newline", "Patient/v01-p1\n{\"patient\": \"Patient/forged\"}"),
                      ("escape", "Patient/v01-p1\x1b[31m")):
        res = vignette()
        _by_id(res, "-ki67")["subject"] = {"reference": ref}
        add(Case(f"control-char-{name}-in-subject", {"p.ndjson": ndjson(res)}, ["control character", "subject"]))
    res = vignette()
    _by_id(res, "-ki67")["id"] = "ki67\nforged"
    add(Case("control-char-in-id", {"p.ndjson": ndjson(res)}, ["control character"]))
    res = [_without(r, "id") for r in vignette()]
    entries = [{"fullUrl": f"urn:uuid:{i}\t{r['resourceType']}", "resource": r} for i, r in enumerate(res)]
    for e in entries[1:]:
        if isinstance(e["resource"].get("subject"), dict):
            e["resource"]["subject"] = {"reference": entries[0]["fullUrl"]}
    add(Case("control-char-in-fullurl",
             {"b.json": json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}, indent=1).encode()},
             ["control character"]))

    # ---- silent drops: wrong JSON types
    add(Case("effective-number", {"p.ndjson": ndjson(_ki67_with(effectiveDateTime=5))},
             ["effectiveDateTime", "must be a date or dateTime string"]))
    add(Case("effective-period-string", {"p.ndjson": ndjson(_ki67_with(effectiveDateTime=None, effectivePeriod="x"))},
             ["effectivePeriod", "Period object"]))
    res = vignette()
    _by_id(res, "-resection").pop("performedDateTime", None)
    _by_id(res, "-resection")["performedPeriod"] = "x"
    add(Case("performed-period-string", {"p.ndjson": ndjson(res)}, ["performedPeriod"]))
    res = vignette()
    _by_id(res, "-nelm")["onsetDateTime"] = ["2020-01-01"]
    add(Case("onset-array", {"p.ndjson": ndjson(res)}, ["onsetDateTime"]))

    # ---- the two paths must read the same
    res = vignette()
    line = json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in res]})
    line = line.replace('"reference": "Patient/v01-p1"', '"reference": "urn:uuid:v01-p1"')
    add(Case("bundle-on-one-ndjson-line", {"b.ndjson": line.encode() + b"\n"}, []))
    text = ndjson(vignette()).replace(b'"code":"29593-1"', b'"code":"\\u0032\\u0039593-1"')
    text = text.replace(b'"resourceType":"Procedure"', b'"resourceType":"Pro\\u0063edure"')
    add(Case("json-escapes-in-codes", {"p.ndjson": text}, []))
    add(Case("utf8-bom", {"p.ndjson": b"\xef\xbb\xbf" + ndjson(vignette())}, []))
    add(Case("utf8-bom-json", {"b.json": b"\xef\xbb\xbf" + pretty_bundle(vignette())}, []))
    add(Case("crlf-lines", {"p.ndjson": ndjson(vignette()).replace(b"\n", b"\r\n")}, []))
    res = vignette()
    res.append({"resourceType": "Observation", "id": "bad-ki67", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
                "subject": {"reference": "Patient/v01-p1"}, "effectiveDateTime": "2024-13-45",
                "valueQuantity": {"value": 5, "unit": "%"}})
    add(Case("pretty-bundle-with-bad-entry", {"b.json": pretty_bundle(res)}, ["Observation/bad-ki67"]))
    add(Case("pretty-bundle-no-suffix", {"bundle": pretty_bundle(vignette())}, []))
    gz = gzip.compress(ndjson(vignette()))
    add(Case("gzip-any-name", {"export-part-1": gz}, []))

    # ---- Bulk export folders: one non-FHIR file must not stop the rest
    log = b"".join(json.dumps({"level": "info", "msg": f"exported {i}"}).encode() + b"\n" for i in range(5))
    manifest = json.dumps({"transactionTime": "2026-01-01T00:00:00Z", "request": "x", "requiresAccessToken": False,
                           "output": [{"type": "Patient", "url": "file:///Patient.ndjson"}], "error": []},
                          indent=2).encode()
    add(Case("bulk-export-log-and-manifest",
             {"log.ndjson": log, "manifest.json": manifest, "Patient.ndjson": ndjson(vignette())},
             ["log.ndjson", "no line is a FHIR resource", "manifest.json", "not FHIR"], hostile="log.ndjson",
             fatal_alone=True, expect_alone=["log.ndjson", "no line is a FHIR resource"]))
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                              "diagnostics": "could not export"}]}
    add(Case("operation-outcome-file", {"OperationOutcome.ndjson": ndjson([outcome]), "p.ndjson": ndjson(vignette())},
             [], hostile="OperationOutcome.ndjson"))

    # ---- file-system oddities (reported, never opened)
    add(Case("broken-symlink", {"gone.ndjson": Link("does-not-exist.ndjson"), "p.ndjson": ndjson(vignette())},
             ["broken symbolic link"], fatal_alone=True))
    add(Case("symlink-loop", {"loop.ndjson": Link("loop.ndjson"), "p.ndjson": ndjson(vignette())},
             ["symbolic link loop"], fatal_alone=True))
    add(Case("named-pipe", {"pipe.ndjson": Fifo(), "p.ndjson": ndjson(vignette())}, ["named pipe"], fatal_alone=True))
    add(Case("empty-file", {"empty.ndjson": b"", "p.ndjson": ndjson(vignette())}, ["empty file"], fatal_alone=True))

    # ---- bounded work: an overlong line, a gzip bomb
    big = {"resourceType": "Observation", "id": "big", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "29593-1"}]},
           "subject": {"reference": "Patient/v01-p1"}, "note": [{"text": "x" * 300_000}]}
    add(Case("overlong-line", {"p.ndjson": ndjson(vignette()) + ndjson([big])}, ["longer than the limit"],
             env={"MILAN_FHIR_MAX_LINE_BYTES": "100000"}))
    bomb = gzip.compress(ndjson(vignette()) + b" " * 30_000_000 + b"\n" + ndjson(vignette()), 9)
    add(Case("gzip-bomb", {"p.ndjson.gz": bomb}, ["inflates to more than"],
             env={"MILAN_FHIR_MAX_GZIP_RATIO": "50", "MILAN_FHIR_MAX_LINE_BYTES": "1000000"}))
    add(Case("truncated-gzip", {"p.ndjson.gz": gzip.compress(ndjson(vignette()) * 3)[:-30]}, ["gzip"]))

    # ---- not FHIR at all
    add(Case("json-array", {"x.json": b"[1, 2, 3]"}, ["not FHIR"], fatal_alone=True))
    add(Case("json-string", {"x.json": b'"hello"'}, ["not FHIR"], fatal_alone=True))
    add(Case("not-utf8", {"p.ndjson": ndjson(vignette()) + b'{"resourceType":"Observation","id":"\xff\xfe","code":{"coding":[{"code":"29593-1"}]}}\n'},
             ["not valid JSON"]))
    add(Case("nul-bytes", {"p.ndjson": ndjson(vignette()) + b"\x00\x00\x00\n"}, ["not valid JSON"]))
    add(Case("huge-number", {"p.ndjson": ndjson(_ki67_with(valueQuantity={"value": 1e308, "unit": "%"}))
                             .replace(b"1e+308", b"1e999")}, ["not valid JSON"]))
    nest: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": []}
    inner = nest
    for _ in range(20):
        b: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": []}
        inner["entry"].append({"resource": b})
        inner = b
    add(Case("bundles-nested-20-deep", {"b.ndjson": ndjson([nest]) + ndjson(vignette())}, ["nested deeper than 8"]))
    add(Case("bundle-entry-not-a-list", {"b.json": b'{"resourceType": "Bundle",\n "entry": {"x": 1}\n}'},
             ["Bundle.entry is not a list"]))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for case in cases():
        case.write(Path(argv[0]) / case.name)
        print(case.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
