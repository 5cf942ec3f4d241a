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

from .._domain import Evaluation, Status
from ._words import (
    CAUTION_EFFECTS,
    CRITERION_LABELS,
    STATUS_WORDS,
    VERDICT_WORDS,
    caution_effect,
    caution_label,
    criterion_label,
    ordered_cautions,
    ordered_criteria,
)

__all__ = ["render", "LABELS", "use_colour"]

#: Human labels of the criteria (the registry's, re-exported for callers of this module).
LABELS: dict[str, str] = CRITERION_LABELS

_UNICODE_SYMBOLS = {Status.MET: "✔", Status.NOT_MET: "✘", Status.INDETERMINATE: "?"}
_ASCII_SYMBOLS = {Status.MET: "+", Status.NOT_MET: "x", Status.INDETERMINATE: "?"}
_COLOURS = {
    "met": "32", "not_met": "31", "indeterminate": "33", "eligible": "32", "ineligible": "31",
    "excludes": "31", "caps": "33", "informs": "36",
}
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


def _wrap_row(label: str, label_w: int, cell_text: str, cell_w: int, key: str, text: str, width: int,
              colour: bool) -> list[str]:
    """One row: label, a coloured cell, and text wrapped beside them (or below, indented, when too narrow)."""
    text_w = width - label_w - cell_w - 4
    if text_w < 30:  # too narrow for three columns: the text goes below, indented
        out = [f"{label}  {_paint(cell_text, key, colour)}"]
        out.extend(textwrap.wrap(text, width=width - 4, initial_indent="    ", subsequent_indent="    ",
                                 break_on_hyphens=False))
        return out
    wrapped = textwrap.wrap(text, width=text_w, break_on_hyphens=False) or [""]
    cell = _paint(cell_text.ljust(cell_w), key, colour)
    out = [f"{label.ljust(label_w)}  {cell}  {wrapped[0]}".rstrip()]
    pad = " " * (label_w + cell_w + 4)
    out.extend(f"{pad}{more}" for more in wrapped[1:])
    return out


def _render_one(ev: Evaluation, width: int, colour: bool, symbols: dict[Status, str]) -> str:
    lines: list[str] = []
    verdict_word = VERDICT_WORDS.get(str(ev.verdict), str(ev.verdict).upper())
    header = f"{ev.patient}  {verdict_word}  as of {ev.as_of.isoformat()}  rule set {ev.rule_set} {ev.rule_set_version}"
    header_lines = textwrap.wrap(header, width=width, break_on_hyphens=False) or [header]
    for i, line in enumerate(header_lines):
        if verdict_word in line:
            header_lines[i] = line.replace(verdict_word, _paint(verdict_word, str(ev.verdict), colour), 1)
            break
    lines.extend(header_lines)
    rule = "-" * min(width, 100)
    lines.append(rule)

    names = ordered_criteria(ev.criteria)
    cautions = ordered_cautions(ev.cautions)
    labels = [criterion_label(n) for n in names] + [caution_label(c.code) for c in cautions]
    label_w = max((len(x) for x in labels), default=10)
    status_w = max(len(f"{symbols[s]} {STATUS_WORDS[s.value]}") for s in Status)

    # Cautions first (criteria.md §1c: the prerequisites are checked before the criteria).
    if cautions:
        lines.append(f"Cautions ({len(cautions)}): checked before the criteria")
        cell_w = max(status_w, *(len(f"! {e}") for e in ("excludes", "caps", "informs")))
        for c in cautions:
            effect = caution_effect(c.code)
            text = f"{c.reason} ({CAUTION_EFFECTS[effect]})"
            lines.extend(_wrap_row(caution_label(c.code), label_w, f"! {effect}", cell_w, effect, text, width, colour))
        lines.append(rule)

    for name in names:
        res = ev.criteria[name]
        status_text = f"{symbols[res.status]} {STATUS_WORDS[res.status.value]}"
        reason = res.reason
        if res.missing:
            reason = f"{reason} Missing: {'; '.join(res.missing)}."
        lines.extend(_wrap_row(criterion_label(name), label_w, status_text, status_w, str(res.status), reason, width,
                               colour))
    notes = []
    if not cautions:
        notes.append("No cautions: every prerequisite (deceased, prior transplant, liver metastasis record, other cancer) holds.")
    if ev.ignored:
        notes.append(f"{len(ev.ignored)} resource(s) read but not counted (see --format json, 'ignored').")
    if ev.unusable:
        notes.append(f"{len(ev.unusable)} value(s) could not be used (see --format json, 'unusable').")
    for note in notes:
        lines.extend(textwrap.wrap(note, width=width))
    return "\n".join(lines) + "\n"
