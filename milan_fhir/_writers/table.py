"""A table for people at a terminal: per patient a header line and one row per criterion.

Readable without colour: every status is a symbol *and* a word. Colour is added only when asked for, or, by
default, when stdout is a terminal and ``NO_COLOR`` is not set (https://no-color.org).
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Iterable

from .._domain import CRITERIA, Evaluation, Status, Verdict

__all__ = ["render", "LABELS", "use_colour"]

#: Human labels of the criteria, in display order.
LABELS: dict[str, str] = {
    "age": "Age",
    "low_grade": "Low-grade histology",
    "liver_burden": "Liver tumour burden",
    "primary_resected_portal": "Primary resected, portal drainage",
    "stable_disease": "Stable disease",
    "no_extrahepatic_disease": "No extrahepatic disease",
}

_UNICODE_SYMBOLS = {Status.MET: "✔", Status.NOT_MET: "✘", Status.INDETERMINATE: "?"}
_ASCII_SYMBOLS = {Status.MET: "+", Status.NOT_MET: "x", Status.INDETERMINATE: "?"}
_WORDS = {Status.MET: "met", Status.NOT_MET: "not met", Status.INDETERMINATE: "indeterminate"}
_VERDICT_WORDS = {
    Verdict.ELIGIBLE: "ELIGIBLE",
    Verdict.INELIGIBLE: "INELIGIBLE",
    Verdict.INDETERMINATE: "INDETERMINATE",
}
_COLOURS = {"met": "32", "not_met": "31", "indeterminate": "33", "eligible": "32", "ineligible": "31"}
_MIN_WIDTH = 40


def use_colour(stream: object = None) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):
        return False


def _can_encode(text: str, stream: object) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _paint(text: str, key: str, colour: bool) -> str:
    code = _COLOURS.get(key)
    if not colour or not code:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def render(
    evaluations: Iterable[Evaluation],
    *,
    width: int | None = None,
    colour: bool | None = None,
    unicode: bool | None = None,
) -> str:
    """The evaluations as a text table, wrapped to ``width`` (default: the terminal's width)."""
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns
    width = max(width, _MIN_WIDTH)
    if colour is None:
        colour = use_colour()
    symbols = _ASCII_SYMBOLS
    if unicode is None:
        unicode = _can_encode("".join(_UNICODE_SYMBOLS.values()), sys.stdout)
    if unicode:
        symbols = _UNICODE_SYMBOLS

    blocks: list[str] = []
    for ev in evaluations:
        blocks.append(_render_one(ev, width, colour, symbols))
    if not blocks:
        return "No patients found in the input.\n"
    return "\n".join(blocks)


def _render_one(ev: Evaluation, width: int, colour: bool, symbols: dict[Status, str]) -> str:
    lines: list[str] = []
    verdict_word = _VERDICT_WORDS.get(ev.verdict, str(ev.verdict).upper())
    header = f"{ev.patient}  {verdict_word}  as of {ev.as_of.isoformat()}  rule set {ev.rule_set} {ev.rule_set_version}"
    header_lines = textwrap.wrap(header, width=width, break_on_hyphens=False) or [header]
    for i, line in enumerate(header_lines):
        if verdict_word in line:
            header_lines[i] = line.replace(verdict_word, _paint(verdict_word, str(ev.verdict), colour), 1)
            break
    lines.extend(header_lines)
    lines.append("-" * min(width, 100))

    names = [n for n in CRITERIA if n in ev.criteria] + [n for n in ev.criteria if n not in CRITERIA]
    label_w = max(len(LABELS.get(n, n)) for n in names) if names else 10
    status_w = max(len(f"{symbols[s]} {_WORDS[s]}") for s in Status)
    reason_w = width - label_w - status_w - 4
    stacked = reason_w < 30  # too narrow for three columns: the reason goes below, indented
    for name in names:
        res = ev.criteria[name]
        label = LABELS.get(name, name)
        status_text = f"{symbols[res.status]} {_WORDS[res.status]}"
        status_cell = _paint(status_text.ljust(status_w), str(res.status), colour)
        reason = res.reason
        if res.missing:
            reason = f"{reason} Missing: {'; '.join(res.missing)}."
        if stacked:
            lines.append(f"{label}  {_paint(status_text, str(res.status), colour)}")
            lines.extend(textwrap.wrap(reason, width=width - 4, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False))
        else:
            wrapped = textwrap.wrap(reason, width=reason_w, break_on_hyphens=False) or [""]
            lines.append(f"{label.ljust(label_w)}  {status_cell}  {wrapped[0]}".rstrip())
            pad = " " * (label_w + status_w + 4)
            lines.extend(f"{pad}{more}" for more in wrapped[1:])
    notes = []
    if ev.ignored:
        notes.append(f"{len(ev.ignored)} resource(s) read but not counted (see --format json, 'ignored').")
    if ev.unusable:
        notes.append(f"{len(ev.unusable)} value(s) could not be used (see --format json, 'unusable').")
    for note in notes:
        lines.extend(textwrap.wrap(note, width=width))
    return "\n".join(lines) + "\n"

