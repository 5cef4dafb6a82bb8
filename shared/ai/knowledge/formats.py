"""Tell a knowledge file's format from its bytes: a filename or a declared type is a hint.

The magic bytes decide for PDFs and ZIP containers (a ZIP must hold a Word document);
text is recognised by decoding, then told apart (HTML by its markup, CSV and Markdown
by the name or declared type, as their content is plain text either way). Anything
else, images and executables included, is refused with 415 before it is stored.
"""

from __future__ import annotations

import zipfile
from pathlib import PurePosixPath
from typing import IO

from shared.errors import DomainError

PDF, DOCX, HTML, MARKDOWN, CSV, TEXT = "pdf", "docx", "html", "markdown", "csv", "text"
FORMATS = (PDF, DOCX, HTML, MARKDOWN, CSV, TEXT)

#: The MIME type each format is stored under (``media_files.mime_type``).
MIME_TYPES = {
    PDF: "application/pdf",
    DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    HTML: "text/html",
    MARKDOWN: "text/markdown",
    CSV: "text/csv",
    TEXT: "text/plain",
}
_BY_MIME = {mime: fmt for fmt, mime in MIME_TYPES.items()} | {
    "text/x-markdown": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/csv": CSV,
}
_BY_SUFFIX = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".csv": CSV,
    ".html": HTML,
    ".htm": HTML,
    ".txt": TEXT,
}
#: Leading bytes :func:`detect` looks at.
HEAD_BYTES = 4096
_HTML_MARKS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<p>", b"<div", b"<h1")


class UnsupportedFormat(DomainError):
    status, code = 415, "unsupported_media_type"


def _hint(filename: str | None, declared: str | None) -> str | None:
    mime = (declared or "").split(";", 1)[0].strip().lower()
    if mime in _BY_MIME:
        return _BY_MIME[mime]
    return _BY_SUFFIX.get(PurePosixPath(filename or "").suffix.lower())


#: Leading bytes of common binaries that could otherwise pass for Windows-1252 text.
_BINARY_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"GIF8",
    b"\xd0\xcf\x11\xe0",  # OLE: .doc, .xls, .msg
    b"\x7fELF",
    b"MZ",
    b"\x1f\x8b",  # gzip
    b"RIFF",
    b"OggS",
    b"ID3",
    b"7z\xbc\xaf",
    b"Rar!",
    b"{\\rtf",
)


def looks_like_text(head: bytes) -> bool:
    """UTF-8 (or UTF-16 with a BOM) with few control characters: what a person wrote."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head or head.startswith(_BINARY_MAGIC) or head[4:8] == b"ftyp":
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a multi-byte character cut by the head's end
            text = head[: exc.start].decode("utf-8")
        elif sum(1 for b in head if b >= 0x80) > len(head) // 4:
            return False  # too many high bytes for Latin-1 prose
        else:
            text = head.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")
    return controls <= len(text) // 100


def detect(head: bytes, *, filename: str | None = None, declared: str | None = None) -> str:
    """The format of a file starting with ``head``, or :class:`UnsupportedFormat` (415)."""
    hint = _hint(filename, declared)
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return DOCX  # checked to be a Word document by is_docx() once the whole file is there
    if head and looks_like_text(head):
        lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if hint in (CSV, MARKDOWN, TEXT):
            return hint
        if hint == HTML or lowered.startswith(_HTML_MARKS) or lowered.startswith(b"<?xml"):
            return HTML
        return TEXT
    shown = (declared or "").split(";", 1)[0].strip() or "this file's type"
    raise UnsupportedFormat(
        f"Knowledge files must be PDF, DOCX, TXT, CSV, Markdown or HTML, not {shown}",
        details=[{"field": "file", "message": "unsupported file type"}],
    )


def is_docx(source: str | IO[bytes]) -> bool:
    """Whether a ZIP file is a Word document (spreadsheets and plain archives are not)."""
    try:
        with zipfile.ZipFile(source) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def require_docx(source: str | IO[bytes]) -> None:
    if not is_docx(source):
        raise UnsupportedFormat(
            "Only Word documents (.docx) are accepted among ZIP-based files",
            details=[{"field": "file", "message": "unsupported file type"}],
        )
