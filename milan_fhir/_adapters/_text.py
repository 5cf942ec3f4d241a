"""(v2) The text safety nets of codes.md: whole words of a Condition's code text or displays.

Words come from a linear scan (one regular expression of a single character class, no nesting), over texts cut
to a bounded length, so hostile text stays cheap. Phrases are matched as consecutive words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

from .._mappings import TextNets

__all__ = ["words", "text_net", "names_any"]

_WORD = re.compile(r"[^\W_]+")
_TEXT_MAX = 4096  # characters of one text that are read


def words(text: str) -> list[str]:
    return _WORD.findall(text[:_TEXT_MAX].lower())


@dataclass(frozen=True)
class _Compiled:
    """A TextNets in look-up form: word sets, and phrases by their first word."""

    exclusions: dict[str, tuple[tuple[str, ...], ...]]
    metastasis_words: frozenset[str]
    metastasis_phrases: dict[str, tuple[tuple[str, ...], ...]]
    suffixes: tuple[str, ...]
    malignancy_words: frozenset[str]


def _by_first(phrases: Iterable[tuple[str, ...]]) -> dict[str, tuple[tuple[str, ...], ...]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for p in phrases:
        if p:  # an empty phrase matches nothing
            out.setdefault(p[0], []).append(tuple(p))
    return {k: tuple(v) for k, v in out.items()}


_COMPILED: dict[int, tuple[TextNets, _Compiled]] = {}


def _compiled(nets: TextNets) -> _Compiled:
    """Built once per TextNets object (kept by identity: hashing a model per call would cost more than it saves)."""
    hit = _COMPILED.get(id(nets))
    if hit is not None and hit[0] is nets:
        return hit[1]
    if len(_COMPILED) >= 16:
        _COMPILED.clear()
    c = _build(nets)
    _COMPILED[id(nets)] = (nets, c)
    return c


def _build(nets: TextNets) -> _Compiled:
    return _Compiled(_by_first(nets.exclusion_phrases), frozenset(nets.metastasis_words),
                     _by_first(nets.metastasis_phrases), tuple(nets.metastasis_word_suffixes),
                     frozenset(nets.other_malignancy_words))


def _has_phrase(tokens: list[str], phrases: dict[str, tuple[tuple[str, ...], ...]]) -> bool:
    """Whether one of the phrases occurs in ``tokens`` as consecutive words."""
    if not phrases:
        return False
    for i, t in enumerate(tokens):
        for p in phrases.get(t, ()):
            if tuple(tokens[i:i + len(p)]) == p:
                return True
    return False


def text_net(nets: TextNets, texts: Iterable[str]) -> Literal["metastasis", "malignancy"] | None:
    """``metastasis`` when a text names a metastasis, else ``malignancy`` when one names a malignant neoplasm;
    None when none does or an exclusion (history of, screening, benign, malignant hypertension...) applies."""
    token_lists = [words(t) for t in texts if isinstance(t, str) and t]
    if not token_lists:
        return None
    c = _compiled(nets)
    for tokens in token_lists:
        if _has_phrase(tokens, c.exclusions):
            return None
    for tokens in token_lists:
        if not c.metastasis_words.isdisjoint(tokens) or _has_phrase(tokens, c.metastasis_phrases) or (
            c.suffixes and any(w.endswith(c.suffixes) for w in tokens)
        ):
            return "metastasis"
    for tokens in token_lists:
        if not c.malignancy_words.isdisjoint(tokens):
            return "malignancy"
    return None


def names_any(texts: Iterable[str], names: Iterable[str]) -> bool:
    """Whether any text contains any of the names (case-insensitive substring; texts are cut to a bound)."""
    lowered = [t[:_TEXT_MAX].lower() for t in texts if isinstance(t, str)]
    return any(n in t for n in names for t in lowered)
