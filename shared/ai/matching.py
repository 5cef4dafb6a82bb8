"""Phrase matching for keywords, intents and handoff requests: whole words, any case."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable


def fold(text: str) -> str:
    """Lower case, accents dropped, whitespace collapsed: "Hablar  con un HUMANO" -> ..."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


@functools.lru_cache(maxsize=4096)
def _pattern(phrase: str) -> re.Pattern[str] | None:
    words = fold(phrase).split()
    if not words:
        return None
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)")


def contains_phrase(folded_text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs as whole words in ``folded_text`` (already :func:`fold`-ed)."""
    pattern = _pattern(phrase)
    return pattern is not None and pattern.search(folded_text) is not None


def first_match(folded_text: str, phrases: Iterable[str]) -> str | None:
    """The first of ``phrases`` found in ``folded_text``."""
    return next((p for p in phrases if contains_phrase(folded_text, p)), None)
