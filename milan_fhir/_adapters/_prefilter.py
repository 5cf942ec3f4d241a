"""A cheap check on a raw NDJSON line, before parsing it: could the rules use this resource?

It must never reject a line that the full parse would use; letting through an irrelevant one only costs a parse.
The rules, in order (each one errs on the side of keeping):

1. a line with a ``\\u`` escape is kept (``"\\u0032\\u0039593-1"`` is ``"29593-1"``; ``"Obs\\u0065rvation"`` is
   an Observation), and so is one with any other JSON escape whose character occurs in a mapped code (``\\/``:
   ICD-O-3 ``8240\\/3``);
2. a line with more than one ``"resourceType"`` is kept (a duplicated key: the parser keeps the last);
3. Patient, Condition and Bundle lines are always kept (Conditions are recognised by code ranges, aliases and
   words in their text: they are few, so all are parsed); so is a line whose type cannot be read at its head
   but which names one of those types anywhere;
4. an Observation or Procedure is kept when a ``"code"`` (or ``"display"``/``"text"``) value, compared without
   case, dots, blanks and the ICD marks ``+ * ! †``, equals a mapped code of the sections the adapters recognise
   or starts with one (any system: aliases and local systems need no list here), or when a ``"text"`` or
   ``"display"`` (or ``"code"``) value names Ki-67 / MIB-1 in any spelling (``Ki67``, ``KI-67``, ``ki 67``,
   ``MIB1``...), or when such a value holds an escaped quote;
5. every other line (another resource type; no mapped code) is dropped.
"""

from __future__ import annotations

import re

from .._mappings import CODE_SECTIONS, Mappings
from ._observation import CONCEPTS as _OBSERVATION_CONCEPTS
from ._procedure import CONCEPTS as _PROCEDURE_CONCEPTS

__all__ = ["RawPrefilter", "PREFILTER_SECTIONS", "KI67_WORDS"]

#: Sections whose codes make a resource relevant: every code section but values and body sites, which never do
#: on their own.
PREFILTER_SECTIONS = tuple(s for s in CODE_SECTIONS if s != "body_sites" and not s.endswith("_values"))

#: Ki-67 names in an Observation's text (case-insensitive; any non-alphanumeric bytes, up to 4, between the
#: parts: "Ki-67", "Ki 67", "Ki‑67" with a non-breaking hyphen, "MIB-1").
KI67_WORDS = re.compile(rb"(?i)(?:ki[^a-z0-9]{0,4}67|mib[^a-z0-9]{0,4}1)")

#: the sections that make an Observation or Procedure line relevant (Condition lines are always kept)
_TYPED_BY_CODE = frozenset((*_OBSERVATION_CONCEPTS, *_PROCEDURE_CONCEPTS))
_ALWAYS = frozenset((b"Patient", b"Condition", b"Bundle"))
_BY_CODE = frozenset((b"Observation", b"Procedure"))
_ALWAYS_LITERALS = (b'"Patient"', b'"Condition"', b'"Bundle"')
_BY_CODE_LITERALS = (b'"Observation"', b'"Procedure"')
_TYPE_VALUE = re.compile(rb'\s*:\s*"([A-Za-z]+)"')
_FAST_HEAD = b'{"resourceType":"'
_SEEN_MAX = 100_000  # distinct code values remembered per prefilter
#: every "code", "display" and "text" string value, up to its first quote (one regular-expression pass); a value
#: cut at an escaped quote ends with a backslash and keeps its line
_VALUES = re.compile(rb'"(?:code|display|text)"\s*:\s*"([^"]*)"')
_MARKS = re.compile(rb"[\s.+*!]|\xe2\x80\xa0")  # blanks, dots, ICD marks + * ! and the dagger (UTF-8)
#: JSON's one-character escapes and the character each stands for
_ESCAPES = {b"\\/": "/", b'\\"': '"', b"\\\\": "\\", b"\\b": "\b", b"\\f": "\f", b"\\n": "\n", b"\\r": "\r",
            b"\\t": "\t"}
_MIN_PREFIX = 3


def _key(code: bytes) -> bytes:
    """Upper case, without dots, blanks and ICD marks: ``c7a.012``, ``C7A012`` and ``C7A.012+`` read ``C7A012``."""
    return _MARKS.sub(b"", code.upper())


class RawPrefilter:
    """``RawPrefilter(mappings).wants(line)``: False only for lines the adapters would skip anyway."""

    def __init__(self, mappings: Mappings) -> None:
        self._keep_by_code = False
        keys = set()
        chars: set[str] = set()
        for section in PREFILTER_SECTIONS:
            for entry in mappings.codes_of(section):
                keys.add(_key(entry.code.encode("utf-8")))
                chars.update(entry.code)
            # pattern entries (a hospital may layer ``44141-44147`` or a prefix): their common leading characters
            # become a parent key (any code under it is kept); a pattern with no such head keeps every
            # Observation/Procedure line (sound, only slower)
            for entry in (mappings.patterns_of(section) if section in _TYPED_BY_CODE else ()):
                head = _pattern_head(entry.match, entry.code)
                chars.update(entry.code)
                if len(head) >= _MIN_PREFIX:
                    keys.add(_key(head.encode("utf-8")))
                else:
                    self._keep_by_code = True
        keys.discard(b"")
        self._keys = frozenset(keys)
        # Ki-67 names of the mappings (layered files may add some) beside the built-in spellings
        extra = [n for n in mappings.text_nets.ki67_names if not KI67_WORDS.search(n.encode("utf-8"))]
        self._ki67 = (
            re.compile(KI67_WORDS.pattern + b"|" + b"|".join(re.escape(n.encode("utf-8")) for n in extra), re.I)
            if extra else KI67_WORDS
        )
        self._lengths = sorted({len(k) for k in keys})
        # escapes whose character could be part of a mapped code keep their line (rule 1)
        self._escapes = tuple(esc for esc, ch in _ESCAPES.items() if ch in chars)
        self._seen: dict[bytes, bool] = {}

    def wants(self, line: bytes) -> bool:
        if b"\\" in line and (b"\\u" in line or any(e in line for e in self._escapes)):  # memchr first: cheap
            return True
        if line.find(b'"resourceType"', line.find(b'"resourceType"') + 1) >= 0:
            return True  # more than one: a duplicated key or contained resources
        rtype = _leading_type(line)
        if rtype is None:  # resourceType is not the first key: the slower, complete check
            if any(t in line for t in _ALWAYS_LITERALS):
                return True
            if not any(t in line for t in _BY_CODE_LITERALS):
                return False
        elif rtype in _ALWAYS:
            return True
        elif rtype not in _BY_CODE:
            return False
        if self._keep_by_code:
            return True
        # values repeat across an export (units, categories, the same lab codes and displays): remember each
        # value's answer (bounded), so most values cost one dict look-up
        seen = self._seen
        for value in _VALUES.findall(line):
            hit = seen.get(value)
            if hit is None:
                hit = value.endswith(b"\\") or self._mapped(value) or self._ki67.search(value) is not None
                if len(seen) < _SEEN_MAX and len(value) <= 256:
                    seen[value] = hit
            if hit:
                return True
        return False

    def _mapped(self, value: bytes) -> bool:
        key = _key(value)
        keys = self._keys
        if key in keys:
            return True
        # a child code under a mapped parent (C7A.0 under C7A, a 5-character ICD-10-GM code, OPS 5-455.41)
        return any(key[:n] in keys for n in self._lengths if _MIN_PREFIX <= n < len(key))


def _pattern_head(kind: str, code: str) -> str:
    """The leading characters every code under a pattern entry starts with ('' when there are none)."""
    if kind == "prefix":
        return code
    if kind == "range":
        lo, _, hi = code.partition("-")
        n = 0
        while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
            n += 1
        return lo[:n]
    return ""  # suffix: any head


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
