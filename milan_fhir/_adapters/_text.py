"""(v2) The text safety nets of codes.md: whole words of a Condition's code text or displays.

Words come from a linear scan (one regular expression of a single character class, no nesting), over texts cut
to a bounded length, so hostile text stays cheap. Phrases are matched as consecutive words.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal

from .._mappings import TextNets

__all__ = ["words", "text_net", "names_any"]

_WORD = re.compile(r"[^\W_]+")
_TEXT_MAX = 4096  # characters of one text that are read


def words(text: str) -> list[str]:
    return _WORD.findall(text[:_TEXT_MAX].lower())


def _has_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    if n == 0 or n > len(tokens):
        return False
    first = phrase[0]
    for i, t in enumerate(tokens):
        if t == first and tuple(tokens[i:i + n]) == phrase:
            return True
    return False


def text_net(nets: TextNets, texts: Iterable[str]) -> Literal["metastasis", "malignancy"] | None:
    """``metastasis`` when a text names a metastasis, else ``malignancy`` when one names a malignant neoplasm;
    None when none does or an exclusion (history of, screening, benign, malignant hypertension...) applies."""
    token_lists = [words(t) for t in texts if isinstance(t, str) and t]
    if not token_lists:
        return None
    for tokens in token_lists:
        if any(_has_phrase(tokens, p) for p in nets.exclusion_phrases):
            return None
    for tokens in token_lists:
        suffixes = nets.metastasis_word_suffixes
        if any(w in nets.metastasis_words for w in tokens) or any(
            _has_phrase(tokens, p) for p in nets.metastasis_phrases
        ) or (suffixes and any(w.endswith(suffixes) for w in tokens)):
            return "metastasis"
    for tokens in token_lists:
        if any(w in nets.other_malignancy_words for w in tokens):
            return "malignancy"
    return None


def names_any(texts: Iterable[str], names: Iterable[str]) -> bool:
    """Whether any text contains any of the names (case-insensitive substring; texts are cut to a bound)."""
    lowered = [t[:_TEXT_MAX].lower() for t in texts if isinstance(t, str)]
    return any(n in t for n in names for t in lowered)
