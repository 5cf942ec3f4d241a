"""A cheap check on raw NDJSON bytes, before parsing: which lines could the rules use?

It must never reject a line that the full parse would use (:func:`adapt_resource` gives facts or a fault);
letting through an irrelevant one only costs a parse. It works on a whole block of lines at once: one
multi-pattern search over the block, in compiled code (Hyperscan where it is installed, on x86-64; else
Aho-Corasick, ``ahocorasick_rs``: :data:`ENGINE`), finds the few lines that hold a *needle*, and the lines not
shaped as one JSON object; only those lines are looked at in Python (:meth:`RawPrefilter.lines`);
``wants(line)`` is the same test on one line.

The needles, each derived from what the adapters compare (``Mappings.match``, ``names_any``):

1. a backslash: any JSON escape keeps its line (``"\\u0032\\u0039593-1"`` is ``"29593-1"``, ``"Obs\\u0065rvation"``
   an Observation, ``8240\\/3``, an escaped blank before a code);
2. ``"Patient"``, ``"Condition"``, ``"Bundle"``: those lines are always parsed (Conditions are recognised by code
   ranges, aliases and words of their text: they are few, so all are parsed);
3. every mapped code of the sections the adapters recognise (exact entries of every code section but values and
   body sites; the common head of the range and prefix entries of the Observation and Procedure sections), as the
   start of a JSON string (``"29593-1``: a longer code under it, ``C7A.012`` under ``C7A.0``, is found too), or
   after a blank (``Coding.code`` is read stripped: ``" 29593-1"``, with any Unicode blank); codes of ICD-10
   systems (ICD-10-CM, the WHO/GM variants and what they share) in every case and with or without their dot, and
   the few non-ASCII letters whose upper case is an ASCII letter of such a code (``ı``, ``ſ``, ``ﬁ``...) anywhere;
4. every Ki-67 name of the mappings (``text_nets.ki67_names``, compared in lower case with the code's text and
   displays) in every case, with the Kelvin sign for ``k`` and the dotted capital I for a final ``i``;
5. a suffix pattern (or a pattern without a common head) in an Observation or Procedure section:
   ``"Observation"`` and ``"Procedure"`` (every such line is kept).

A line with a needle is then kept unless its type is plainly another one: exactly one ``"resourceType"``, no
escape, and its value (at the head, as Bulk Data exports write it, or else by the type names it holds) is not
Patient, Condition, Bundle, Observation or Procedure.

Why this is sound: the adapters use only Patient, Condition, Observation and Procedure resources (and a
Bundle's entries); Observations and Procedures only through ``Mappings.match`` of a coding (the code stripped;
for ICD-10 systems in upper case, a trailing mark and the missing dot ignored; an exact code, a code under a
mapped parent, a code under a pattern) or, for Observations, a Ki-67 name in the lower-cased text: each of these
leaves one of the needles in the raw bytes, or an escape. ``tests/test_prefilter_blocks.py`` checks it with a
property test against the full parse, and the Unicode tables below against the running Python.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from .._mappings import CODE_SECTIONS, ICD10CM, Mappings
from ._observation import CONCEPTS as _OBSERVATION_CONCEPTS
from ._procedure import CONCEPTS as _PROCEDURE_CONCEPTS

__all__ = ["RawPrefilter", "PREFILTER_SECTIONS", "UNICODE_BLANKS", "UPPER_TO_ASCII", "LOWER_TO_ASCII"]

#: Sections whose codes make a resource relevant: every code section but values and body sites, which never do
#: on their own.
PREFILTER_SECTIONS = tuple(s for s in CODE_SECTIONS if s != "body_sites" and not s.endswith("_values"))
#: the sections whose pattern entries make an Observation or Procedure line relevant (Condition lines are always
#: kept)
_TYPED_BY_CODE = frozenset((*_OBSERVATION_CONCEPTS, *_PROCEDURE_CONCEPTS))

#: every character ``str.strip()`` removes that may stand unescaped in a JSON string (the control characters
#: must be escaped, and a backslash is a needle of its own); checked against ``str.isspace`` by the tests
UNICODE_BLANKS = (" \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029"
                  "\u202f\u205f\u3000")
#: the non-ASCII characters whose ``upper()`` holds an ASCII character (``ı`` -> ``I``, ``ﬁ`` -> ``FI``)
UPPER_TO_ASCII = ("\xdf\u0131\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05"
                  "\ufb06")
#: the non-ASCII characters whose ``lower()`` holds an ASCII character (the dotted capital I, the Kelvin sign)
LOWER_TO_ASCII = "\u0130\u212a"

_ALWAYS = frozenset((b"Patient", b"Condition", b"Bundle"))
_BY_CODE = frozenset((b"Observation", b"Procedure"))
_ALWAYS_LITERALS = (b'"Patient"', b'"Condition"', b'"Bundle"')
_BY_CODE_LITERALS = (b'"Observation"', b'"Procedure"')
_FAST_HEAD = b'{"resourceType":"'
_TYPE_VALUE = re.compile(rb'\s*:\s*"([A-Za-z]+)"')
_HEAD_CHARS = 3  # characters of a code that follow a blank in a needle (a blank before a code is rare)


#: a needle: a sequence of slots, each the byte strings that may stand there (``"`` then ``C|c`` then ``7``...)
Needle = tuple[tuple[bytes, ...], ...]


def _literal(text: str) -> Needle:
    return ((text.encode("utf-8"),),)


def _caseless(text: str) -> Needle:
    """``text`` in any ASCII case (as ``upper()`` reads an ICD-10 code)."""
    return tuple(tuple(dict.fromkeys(c.encode() for c in (ch, ch.upper(), ch.lower()) if len(c) == 1))
                 if ch.isascii() else (ch.encode("utf-8"),) for ch in text)


def _name(name: str) -> Needle:
    """A Ki-67 name (lower case) as ``lower()`` reads it: any ASCII case, the Kelvin sign for ``k``, the dotted
    capital I for a final ``i`` (its ``lower()`` is ``i`` and a combining dot)."""
    slots = []
    for i, ch in enumerate(name):
        alts = [c for c in (ch, ch.upper()) if len(c) == 1]
        alts += [x for x in LOWER_TO_ASCII if x.lower() == ch or (i == len(name) - 1 and len(x.lower()) > 1
                                                                  and x.lower().startswith(ch))]
        slots.append(tuple(dict.fromkeys(a.encode("utf-8") for a in alts)))
    return tuple(slots)


def _pattern_heads(kind: str, code: str) -> list[str]:
    """Code starts that every code under a pattern entry begins with one of ([] when there are none)."""
    if kind == "prefix":
        return [code]
    if kind == "range":
        lo, _, hi = code.partition("-")
        n = 0
        while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
            n += 1
        head = lo[:n]
        if n < len(lo) and n < len(hi) and ord(hi[n]) - ord(lo[n]) < 64:
            return [head + chr(c) for c in range(ord(lo[n]), ord(hi[n]) + 1)]
        return [head] if head else []
    return []  # suffix: any head


def _icd_forms(code: str) -> list[str]:
    """An ICD-10 code as the data may write it: with its dot (``C7A.012``) or without (``C7A012``)."""
    forms = [code]
    if code[3:4] == ".":
        forms.append(code[:3] + code[4:])
    return forms


class RawPrefilter:
    """``RawPrefilter(mappings).lines(block)`` / ``.wants(line)``: drops only lines the adapters would skip."""

    def __init__(self, mappings: Mappings, *, engine: str | None = None) -> None:
        icd_systems = {ICD10CM, *mappings.icd10_variants, *(v.shares for v in mappings.icd10_variants.values())}
        exact: set[str] = {"\\", *(t.decode() for t in _ALWAYS_LITERALS)}  # matched as they are
        caseless: set[str] = set()  # matched in any ASCII case (ICD-10 codes)
        codes: list[tuple[str, bool]] = []  # (code start, ICD system)
        keep_typed = False
        for section in PREFILTER_SECTIONS:
            for entry in mappings.codes_of(section):
                codes.append((entry.code, entry.system in icd_systems))
            if section not in _TYPED_BY_CODE:
                continue
            for entry in mappings.patterns_of(section):
                heads = [h for h in _pattern_heads(entry.match, entry.code) if len(h.strip()) >= 2]
                if not heads:
                    keep_typed = True  # a pattern with no common head: every Observation/Procedure line is kept
                codes.extend((h, entry.system in icd_systems) for h in heads)
        letters: set[str] = set()
        heads_exact: set[str] = set()
        heads_caseless: set[str] = set()
        for code, icd in codes:
            code = code.strip()
            if not code:
                continue
            for form in (_icd_forms(code.upper()) if icd else [code]):
                (caseless if icd else exact).add('"' + form)
                (heads_caseless if icd else heads_exact).add(form[:_HEAD_CHARS])
            if icd:
                letters.update(c for c in code.upper() if c.isascii())
        # a non-ASCII character whose upper case is a letter of an ICD-10 code (``ı`` for I): anywhere
        exact.update(x for x in UPPER_TO_ASCII if any(c in letters for c in x.upper()))
        names: set[str] = set()
        for name in mappings.text_nets.ki67_names:
            name = name.lower()
            ascii_head = "".join(itertools.takewhile(lambda c: c.isascii(), name))
            if ascii_head:
                names.add(ascii_head)
            elif name:
                keep_typed = True  # a name starting with a non-ASCII letter: kept by type (rare, sound)
        if keep_typed:
            exact.update(t.decode() for t in _BY_CODE_LITERALS)
        exact.discard("")
        blanks = tuple(c.encode("utf-8") for c in UNICODE_BLANKS)
        needles: list[Needle] = [_literal(n) for n in sorted(exact)]
        needles += [_caseless(n) for n in sorted(caseless)]
        needles += [_name(n) for n in sorted(names)]
        needles += [(blanks, *_literal(h)) for h in sorted(heads_exact)]
        needles += [(blanks, *_caseless(h)) for h in sorted(heads_caseless)]
        self.needles: tuple[Needle, ...] = tuple(dict.fromkeys(needles))
        #: the search engine: "hyperscan" where the package is installed (x86-64), else "ahocorasick"
        self.engine = engine or ENGINE
        self._ends = _matcher(self.needles, self.engine)

    def wants(self, line: bytes) -> bool:
        """Whether the rules could use this one line (no newline in it)."""
        return bool(self._ends(line)) and _typed(line)

    def lines(self, buf: bytes, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of the lines of ``buf[start:stop]`` (whole lines, each ending with ``\\n``) to look
        at, in order: each line shaped as one JSON object (``{`` first, ``}`` last) that :meth:`wants` keeps, and
        every line not so shaped (the caller reads it as ``evaluate`` does, to report it). Blank lines are left
        out. One search over the buffer; only the lines it points at are touched in Python."""
        stop = len(buf) if stop is None else stop
        out: list[tuple[int, int]] = []
        end = start - 1
        rfind, find = buf.rfind, buf.find
        ends = self._ends(buf)
        if start < stop and buf[start] != 123:  # 123 "{": the first line has no newline before it to match
            ends.insert(0, start + 1)
        for e in ends:
            pos = e - 1  # the last byte of the match: in the line it points at ...
            if buf[pos] == 10:  # ... but for "[^}\n]\n" the newline ending that line
                pos -= 1
            if pos <= end or pos < start:
                continue  # a line already seen, or before the range
            if pos >= stop:
                break
            s = rfind(b"\n", 0, pos) + 1
            end = find(b"\n", pos)
            if buf[s] != 123 or buf[end - 1] != 125 or _typed(buf[s:end]):
                out.append((s, end))
        return out


#: lines not shaped as one JSON object: a line starting with anything but "{", or ending with anything but "}"
#: (Hyperscan patterns; the Aho-Corasick engine counts line boundaries instead)
_MISSHAPEN = (rb"\n[^{\n]", rb"[^}\n]\n")
_MAX_SPELLINGS = 256  # literals one needle stands for in the Aho-Corasick engine (a longer needle is cut: sound)
_MATCHERS: dict[tuple[Any, ...], Any] = {}
ENGINES = ("hyperscan", "ahocorasick")


def _engine() -> str:
    """``MILAN_FHIR_PREFILTER=hyperscan|ahocorasick`` chooses; else Hyperscan when it can be imported (it is
    installed on x86-64), else Aho-Corasick (``ahocorasick_rs``, installed elsewhere)."""
    import os

    wanted = os.environ.get("MILAN_FHIR_PREFILTER", "").strip().lower()
    if wanted in ENGINES:
        return wanted
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return "ahocorasick"
    return "hyperscan"


#: the search engine of this process (``milan-fhir --version`` names it)
ENGINE = _engine()


def _expression(needle: Needle) -> bytes:
    """A needle as a Hyperscan expression."""
    out = []
    for alts in needle:
        if len(alts) == 1:
            out.append(re.escape(alts[0]))
        elif all(len(a) == 1 for a in alts):
            out.append(b"[" + b"".join(re.escape(a) for a in alts) + b"]")
        else:
            out.append(b"(?:" + b"|".join(re.escape(a) for a in alts) + b")")
    return b"".join(out)


def _spellings(needle: Needle) -> list[bytes]:
    """The literals a needle stands for, cut to its longest head with at most ``_MAX_SPELLINGS`` of them."""
    slots: list[Any] = []
    count = 1
    for alts in needle:
        if slots and count * len(alts) > _MAX_SPELLINGS:
            break
        slots.append(alts)
        count *= len(alts)
    return [b"".join(p) for p in itertools.product(*slots)]


def _matcher(needles: tuple[Needle, ...], engine: str) -> Any:
    """``ends(buf) -> [end offset of each match, increasing]``: every needle found, and for each line not shaped
    as one JSON object a match in it; compiled once per process (forked helpers inherit it)."""
    key = (engine, needles)
    ends = _MATCHERS.get(key)
    if ends is not None:
        return ends
    if engine == "hyperscan":
        import hyperscan

        exprs = [_expression(n) for n in needles] + list(_MISSHAPEN)
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=[0] * len(exprs))

        def ends(buf: bytes) -> list[int]:
            out: list[int] = []
            add = out.append

            def hit(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                add(end)

            db.scan(buf, match_event_handler=hit)
            out.sort()  # Hyperscan reports by end offset already; sorting a sorted list costs one pass
            return out
    elif engine == "ahocorasick":
        import ahocorasick_rs

        literals = sorted({s for n in needles for s in _spellings(n)})
        find = ahocorasick_rs.BytesAhoCorasick(literals).find_matches_as_indexes

        def ends(buf: bytes) -> list[int]:
            out = [e for _i, _s, e in find(buf)]
            nl = buf.count(b"\n")
            closed = buf.endswith(b"\n")
            if buf.count(b"}\n{") != nl - closed or (closed and buf[-2:-1] != b"}"):
                out = sorted(out + _misshapen(buf))  # some line boundary is not "}\n{": find those lines
            return out
    else:
        raise ValueError(f"unknown prefilter engine {engine!r} (one of {', '.join(ENGINES)})")
    if len(_MATCHERS) >= 8:
        _MATCHERS.clear()
    _MATCHERS[key] = ends
    return ends


def _misshapen(buf: bytes) -> list[int]:
    """A match end inside each non-blank line of ``buf`` not shaped as one JSON object (the slow way)."""
    out, pos = [], 0
    for line in buf.split(b"\n"):
        if line and (line[0] != 123 or line[-1] != 125):
            out.append(pos + 1)
        pos += len(line) + 1
    return out


def _typed(line: bytes) -> bool:
    """False for a line that is plainly of a type the rules never read (one unescaped ``resourceType``)."""
    if b"\\" in line or line.find(b'"resourceType"', line.find(b'"resourceType"') + 1) >= 0:
        return True  # an escape, or more than one type (a duplicated key: the parser keeps the last)
    rtype = _leading_type(line)
    if rtype is None:  # resourceType is not the first key: the type names it holds decide
        return any(t in line for t in _ALWAYS_LITERALS) or any(t in line for t in _BY_CODE_LITERALS)
    return rtype in _ALWAYS or rtype in _BY_CODE


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
