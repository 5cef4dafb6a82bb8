"""Cut text into passages of about :data:`CHUNK_CHARS` characters that overlap a little.

WHY characters, not tokens: the tokenizer depends on the model (and an agent may
change model, or use the offline one), while the text and PostgreSQL's ranking do
not; ~1,000 characters is ~250 tokens in English for any current tokenizer, a size
that holds one idea, ranks sharply in full text and leaves room for five passages in
any prompt. Cuts fall on paragraph, then sentence, then word boundaries; a passage
never splits a word. WHY overlap: a fact that straddles a cut is still whole in one
of the two passages; :data:`OVERLAP_CHARS` carries the last sentence(s) of a passage
into the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

CHUNK_CHARS = 1000
OVERLAP_CHARS = 150
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f])\s+|\n")


def _split_long(unit: str, size: int) -> Iterator[str]:
    """A unit longer than ``size``: by sentences, then by words, then (a URL...) hard."""
    for sentence in _SENTENCE_END.split(unit):
        sentence = sentence.strip()
        if len(sentence) <= size:
            if sentence:
                yield sentence
            continue
        piece = ""
        for word in sentence.split():
            while len(word) > size:
                if piece:
                    yield piece
                    piece = ""
                yield word[:size]
                word = word[size:]
            if piece and len(piece) + 1 + len(word) > size:
                yield piece
                piece = word
            else:
                piece = f"{piece} {word}" if piece else word
        if piece:
            yield piece


def _units(sections: Iterable[str], size: int) -> Iterator[tuple[str, str]]:
    """``(text, joiner)`` pieces no longer than ``size``; the joiner precedes the piece."""
    for section in sections:
        for paragraph in _PARAGRAPHS.split(section):
            paragraph = paragraph.strip()
            if not paragraph:
                continue
            if len(paragraph) <= size:
                yield paragraph, "\n\n"
                continue
            for index, piece in enumerate(_split_long(paragraph, size)):
                yield piece, "\n\n" if index == 0 else " "


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text``, starting at a sentence or word."""
    if overlap <= 0 or not text:
        return ""
    if len(text) <= overlap:
        return text
    cut = text[-overlap:]
    sentence = _SENTENCE_END.search(cut)
    if sentence and sentence.end() < len(cut):
        return cut[sentence.end() :].strip()
    space = cut.find(" ")
    return cut[space + 1 :].strip() if space != -1 else ""


def chunk(
    sections: Iterable[str], *, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS
) -> list[str]:
    """Passages of at most ``size`` characters; each starts with the previous one's tail."""
    if not 0 <= overlap < size // 2:
        raise ValueError("overlap must be less than half the chunk size")
    chunks: list[str] = []
    current = ""
    fresh = False  # whether ``current`` holds more than the carried-over tail
    for text, joiner in _units(sections, size):
        candidate = f"{current}{joiner}{text}" if current else text
        if len(candidate) <= size:
            current, fresh = candidate, True
            continue
        if fresh:
            chunks.append(current)
        carried = _tail(current, overlap)
        current = f"{carried} {text}" if carried and len(carried) + 1 + len(text) <= size else text
        fresh = True
    if fresh and current:
        chunks.append(current)
    return chunks
