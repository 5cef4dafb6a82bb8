"""Chunking, format detection and parsing as plain functions (no database needed)."""

from __future__ import annotations

import itertools

import pytest

from shared.ai.knowledge import chunking, formats, parsing
from tests.ai_knowledge.documents import docx, pdf


def test_chunks_respect_the_size_and_overlap_on_sentence_boundaries():
    sentences = [f"Sentence number {i} explains one fact about returns." for i in range(120)]
    text = " ".join(sentences[:60]) + "\n\n" + " ".join(sentences[60:])
    chunks = chunking.chunk([text], size=400, overlap=100)
    assert all(len(c) <= 400 for c in chunks)
    assert len(chunks) > 10
    for previous, current in itertools.pairwise(chunks):
        # Each chunk starts with whole sentences carried over from the previous one.
        first_sentence = current.split(". ")[0]
        assert first_sentence in previous
        assert current[0].isupper()
    joined = " ".join(chunks)
    assert all(s in joined for s in sentences)  # nothing lost


def test_chunks_never_split_words_and_cut_giant_tokens():
    words = " ".join(f"word{i}" for i in range(2000))
    chunks = chunking.chunk([words], size=300, overlap=50)
    tokens = {t for c in chunks for t in c.split()}
    assert tokens == {f"word{i}" for i in range(2000)}
    url = "https://example.com/" + "x" * 700
    assert [len(c) for c in chunking.chunk([url], size=300, overlap=50)] == [300, 300, 120]


def test_small_text_is_one_chunk_and_empty_text_none():
    assert chunking.chunk(["Short answer."]) == ["Short answer."]
    assert chunking.chunk(["", "  \n\n "]) == []
    with pytest.raises(ValueError):
        chunking.chunk(["x"], size=100, overlap=60)


@pytest.mark.parametrize(
    ("head", "filename", "declared", "expected"),
    [
        (b"%PDF-1.7\n...", "notes.txt", "text/plain", formats.PDF),
        (b"PK\x03\x04rest", "a.docx", None, formats.DOCX),
        (b"<!DOCTYPE html><html>", "page", None, formats.HTML),
        (b"  <html lang=en>", None, None, formats.HTML),
        (b"# Title\n\nText", "readme.md", None, formats.MARKDOWN),
        (b"a,b\n1,2\n", None, "text/csv", formats.CSV),
        (b"plain words", None, None, formats.TEXT),
        ("caf\u00e9".encode("cp1252") + b" au lait", "menu.txt", None, formats.TEXT),
    ],
)
def test_format_is_sniffed_from_bytes(head, filename, declared, expected):
    assert formats.detect(head, filename=filename, declared=declared) == expected


@pytest.mark.parametrize(
    "head",
    [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xe0JFIF", b"MZ\x90\x00\x03", b"\x00\x01\x02\x03"],
)
def test_binaries_are_unsupported(head):
    with pytest.raises(formats.UnsupportedFormat):
        formats.detect(head, filename="x.txt", declared="text/plain")


def test_parsers_keep_text_and_drop_markup():
    pages = parsing.parse(formats.PDF, pdf([["First page (one)."], ["Second page."]]))
    assert pages == ["First page (one).", "Second page."]
    assert parsing.parse(formats.DOCX, docx(["Alpha.", "Beta."])) == ["Alpha.\n\nBeta."]
    html = b"<html><body><script>alert(1)</script><p>Hi <b>there</b>\x00</p></body></html>"
    assert parsing.parse(formats.HTML, html) == ["Hi there"]
    assert parsing.parse(formats.TEXT, b"\xef\xbb\xbfBOM\r\nlines\x07") == ["BOM\nlines"]
    assert parsing.parse(formats.CSV, b"name;price\nTea;3\n;\n") == ["name: Tea; price: 3"]


def test_unreadable_files_raise_parse_failed():
    with pytest.raises(parsing.ParseFailed, match="cannot be read"):
        parsing.parse(formats.PDF, b"%PDF-1.4 garbage")
    with pytest.raises(parsing.ParseFailed, match="Word document"):
        parsing.parse(formats.DOCX, b"PK\x03\x04 not really a zip")
    with pytest.raises(parsing.ParseFailed, match="no text"):
        parsing.parse(formats.HTML, b"<html><script>only()</script></html>")
