"""A cheap check on a raw NDJSON line, before parsing it: could the rules use this resource?

It must never reject a relevant resource; letting through an irrelevant one only costs a parse. A line passes
when it is a Patient, or when it is an Observation, Condition or Procedure with a ``"code"`` value among the
mapped codes of the sections the adapters recognise (compared without dots and case, so ``C7A012`` and
``c7a.012`` pass too).
"""

from __future__ import annotations

import re

from .._mappings import CODE_SECTIONS, Mappings

__all__ = ["RawPrefilter", "PREFILTER_SECTIONS"]

#: Sections whose codes make a resource relevant: every code section but values and body sites, which never do
#: on their own.
PREFILTER_SECTIONS = tuple(s for s in CODE_SECTIONS if s != "body_sites" and not s.endswith("_values"))

_TYPES = (b'"Observation"', b'"Condition"', b'"Procedure"')
_TYPE_NAMES = frozenset((b"Observation", b"Condition", b"Procedure"))
_TYPE_VALUE = re.compile(rb'\s*:\s*"([A-Za-z]+)"')
_FAST_HEAD = b'{"resourceType":"'
_SEEN_MAX = 100_000  # distinct code values remembered per prefilter
_CODE_VALUE = re.compile(rb'"code"\s*:\s*"([^"]*)"')


def _key(code: bytes) -> bytes:
    """Upper case, no dots, no surrounding blanks: ``c7a.012`` and ``C7A012`` both read ``C7A012``."""
    return code.upper().replace(b".", b"").strip()


class RawPrefilter:
    """``RawPrefilter(mappings).wants(line)``: False only for lines the adapters would skip anyway."""

    def __init__(self, mappings: Mappings) -> None:
        keys = set()
        for section in PREFILTER_SECTIONS:
            for entry in mappings.codes_of(section):
                keys.add(_key(entry.code.encode("utf-8")))
        self._keys = frozenset(keys)
        self._seen: dict[bytes, bool] = {}
        # (v2) pattern entries (C00-C76, Z85, OPS 5-504, CPT ranges) and the Ki-67 text net (criteria.md §1d)
        self._patterns = [e for section in PREFILTER_SECTIONS for e in mappings.patterns_of(section)]
        self._ki67_names = tuple(n.encode("utf-8") for n in mappings.text_nets.ki67_names)
        self._condition_stems = _text_stems(mappings)
        groups: dict[bytes, list[bytes]] = {}
        for n in self._ki67_names:
            groups.setdefault(n[:2], []).append(n)
        self._ki67_groups = tuple((head, tuple(names)) for head, names in groups.items())

    def wants(self, line: bytes) -> bool:
        rtype = _leading_type(line)
        if rtype is None:  # resourceType is not the first key: the slower, complete check
            if b'"Patient"' in line:
                return True
            if not any(t in line for t in _TYPES):
                return False
        elif rtype == b"Patient":
            return True
        elif rtype not in _TYPE_NAMES:
            return False
        if rtype == b"Condition" or (rtype is None and b'"Condition"' in line):
            # (v2) the text safety nets read a Condition's text: pass any line naming one of their words
            # (by the word's longest ASCII run, so JSON \u escapes and case do not hide it)
            low = line.lower()
            if any(stem in low for stem in self._condition_stems):
                return True
        if self._ki67_names and (rtype is None or rtype == b"Observation") and self._may_name_ki67(line):
            return True
        # code values repeat across an export (units, categories, the same lab codes): remember each value's
        # answer (bounded), so most values cost one dict look-up instead of three bytes operations
        seen = self._seen
        for value in _CODE_VALUE.findall(line):
            hit = seen.get(value)
            if hit is None:
                hit = _key(value) in self._keys or self._pattern_hit(value)
                if len(seen) < _SEEN_MAX:
                    seen[value] = hit
            if hit:
                return True
        return False


    def _may_name_ki67(self, line: bytes) -> bool:
        """Whether the line names Ki-67 (criteria.md §1d), case-insensitively; the names are grouped by their
        first two letters, checked first (one pass each instead of one per name)."""
        low = line.lower()
        return any(head in low and any(n in low for n in names) for head, names in self._ki67_groups)

    def _pattern_hit(self, value: bytes) -> bool:
        if not self._patterns:
            return False
        text = value.decode("utf-8", "replace").strip().upper().rstrip("+*!†")
        return any(p.covers(text) for p in self._patterns)


def _text_stems(mappings: Mappings) -> tuple[bytes, ...]:
    nets = mappings.text_nets
    words = [*nets.metastasis_words, *nets.metastasis_word_suffixes, *nets.other_malignancy_words,
             *(w for phrase in nets.metastasis_phrases for w in phrase)]
    stems = set()
    for w in words:
        runs = [r for r in re.split(r"[^a-z]+", w.lower()) if r]
        if runs:
            stems.add(max(runs, key=len).encode("ascii"))
    return tuple(sorted(stems))


def _leading_type(line: bytes) -> bytes | None:
    """The resourceType when it is the first key of the line's object (as in Bulk Data exports), else None."""
    if line.startswith(_FAST_HEAD):
        end = line.find(b'"', 17, 60)
        return line[17:end] if end > 0 else None
    head = line[:80]
    i = head.find(b'"resourceType"')
    if i < 0 or head[:i].strip() != b"{":
        return None
    m = _TYPE_VALUE.match(head, i + 14)
    return m.group(1) if m else None
