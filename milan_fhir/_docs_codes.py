"""Render ``docs/codes.md`` from the default mappings (``mappings/*.yaml``), so the document cannot drift.

    python -m milan_fhir._docs_codes            # rewrite docs/codes.md
    python -m milan_fhir._docs_codes --check    # exit 1 when docs/codes.md differs from the mappings

Every section of every mapping file is rendered generically, whatever its name: a list of code entries becomes a
table (code, system, display, level, source, then every other field the entries carry), a mapping of entries a
table keyed by name, a list of words a line, a text a paragraph. The comment lines just above a section in the
YAML file become its description. Nothing here interprets the codes: the file is a faithful listing of the data.
``tests/test_docs.py`` regenerates it and fails when the committed file differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ._mappings import DEFAULT_FILES, _default_dir

__all__ = ["render", "main", "DOC_PATH"]

#: where the generated document lives, relative to the repository root
DOC_PATH = Path("docs") / "codes.md"
_FIRST_COLUMNS = ("code", "system", "display", "level", "source")
_LEVELS = {
    "V": "checked in a primary or standards source (mCODE, HL7 terminology)",
    "V2": "seen in at least one secondary FHIR implementation guide or code list",
    "U": "unverified: kept, and flagged as unverified in every result that uses it",
}


def _files(folder: Path) -> list[Path]:
    present = {p.name: p for p in folder.glob("*.yaml")}
    ordered = [present.pop(name) for name in DEFAULT_FILES if name in present]
    return ordered + [present[name] for name in sorted(present)]


def _comments(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The file's leading comment block, and the comment lines just above each top-level key."""
    head: list[str] = []
    above: dict[str, list[str]] = {}
    pending: list[str] = []
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("#"):
            body = line[1:]
            body = body[1:] if body.startswith(" ") else body
            if set(body.strip()) <= {"-", "="}:  # a ruler line
                body = ""
            pending.append(body.rstrip())
            continue
        if not stripped:
            if not seen_key and pending:
                head.extend(pending)
                head.append("")
                pending = []
            continue
        if not line[0].isspace() and ":" in line:
            key = line.split(":", 1)[0].strip().strip("'\"")
            if not seen_key and not head and pending and len(pending) > 3:
                head, pending = pending, []
            above[key] = [p for p in pending if p.strip()]
            seen_key = True
        pending = []
    while head and not head[-1].strip():
        head.pop()
    return head, above


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _columns(rows: Iterable[dict[str, Any]], first: Iterable[str]) -> list[str]:
    rows = list(rows)
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(str(k))
    lead = [k for k in first if k in keys]
    return lead + [k for k in keys if k not in lead]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _section(key: str, value: Any) -> list[str]:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = _columns(value, _FIRST_COLUMNS)
        body = [[_cell(row.get(c)) for c in cols] for row in value]
        if "code" in cols:
            counts = {lvl: sum(1 for row in value if row.get("level") == lvl) for lvl in _LEVELS}
            summary = ", ".join(f"{n} {lvl}" for lvl, n in counts.items() if n)
            lines = [f"{len(value)} entries" + (f" ({summary})." if summary else "."), ""]
        else:
            lines = []
        return lines + _table(cols, body)
    if isinstance(value, list):
        return [", ".join(f"`{_cell(v)}`" for v in value) if value else "(empty)"]
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        rows = list(value.values())
        cols = _columns(rows, ())
        if len(value) <= 6 < len(cols):  # few wide entries (rule sets): one column per entry, one row per field
            names = [str(k) for k in value]
            return _table(["field", *(f"`{_cell(n)}`" for n in names)],
                          [[f"`{c}`", *(_cell(value[n].get(c)) for n in names)] for c in cols])
        return _table(["key", *cols], [[f"`{_cell(k)}`", *(_cell(v.get(c)) for c in cols)] for k, v in value.items()])
    if isinstance(value, dict):
        return _table(["key", "value"], [[f"`{_cell(k)}`", _cell(v)] for k, v in value.items()])
    return [_cell(value)]


def render(folder: Path | None = None) -> str:
    """``docs/codes.md`` as text, from the mapping files in ``folder`` (default: the shipped defaults)."""
    folder = Path(folder) if folder is not None else _default_dir()
    files = _files(folder)
    out = [
        "# Default code mappings",
        "",
        "<!-- GENERATED by `python -m milan_fhir._docs_codes` from mappings/*.yaml: do not edit by hand. -->",
        "",
        "Everything milan-fhir recognises by default, rendered from the mapping files shipped with it "
        "(`mappings/` in the repository, `milan_fhir/_default_mappings` in the wheel). The rules that use these "
        "codes are in [criteria.md](criteria.md); how a hospital layers its own codes is in the README "
        "(\"Adding local codes\").",
        "",
        "Levels of every code entry:",
        "",
    ]
    out += [f"- **{lvl}**: {why}" for lvl, why in _LEVELS.items()]
    out += ["", "Files: " + ", ".join(f"[`{p.name}`](#{p.stem.replace('.', '')})" for p in files) + "."]
    for path in files:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        head, above = _comments(text)
        out += ["", f"## {path.stem}", "", f"File `mappings/{path.name}`."]
        if head:
            out += ["", "```text", *head, "```"]
        if not isinstance(data, dict):
            out += ["", _cell(data)]
            continue
        for key, value in data.items():
            out += ["", f"### `{key}`", ""]
            notes = above.get(str(key)) or []
            if notes:
                out += [" ".join(n.strip() for n in notes), ""]
            out += _section(str(key), value)
    return "\n".join(out).rstrip() + "\n"


def _repo_doc() -> Path:
    return Path(__file__).resolve().parent.parent / DOC_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m milan_fhir._docs_codes", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/codes.md is up to date")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: docs/codes.md)")
    args = parser.parse_args(argv)
    target = args.out or _repo_doc()
    text = render()
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run python -m milan_fhir._docs_codes", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
