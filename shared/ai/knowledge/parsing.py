"""Turn a knowledge file's bytes into plain text, one section per page or document part.

Every library error is a :class:`ParseFailed`: a corrupt PDF or a broken DOCX will not
parse better on a retry, so ingestion fails such a source at once with the reason.
Markup and layout are dropped; paragraph breaks are kept (the chunker cuts on them).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable

from shared.ai.knowledge import formats

log = logging.getLogger(__name__)

#: Elements whose text is never knowledge: code, styling, navigation, page furniture, and
#: text a reader never sees (hidden text is a favourite hiding place of prompt injection).
_DROPPED = ", ".join(
    (
        "script, style, noscript, template, svg, iframe, nav, footer, header, aside, form",
        "[hidden], [aria-hidden=true]",
        '[style*="display:none"], [style*="display: none"]',
        '[style*="visibility:hidden"], [style*="visibility: hidden"]',
    )
)
#: Block elements: a newline before each keeps "<p>a</p><p>b</p>" from reading "ab".
_BLOCK = re.compile(
    r"<(?=(?:br|/?p|/?div|/?li|/?h[1-6]|/?tr|/?td|/?th|/?section|/?article|/?blockquote"
    r"|/?pre|/?dd|/?dt|/?table|/?ul|/?ol|/?main)\b)",
    re.IGNORECASE,
)
#: C0 controls PostgreSQL text cannot hold (NUL) or that only confuse a model.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


class ParseFailed(Exception):
    """The file cannot be read as its format; ``str()`` says why (shown on the source)."""


def clean(text: str) -> str:
    """Plain text as stored: no control characters, single spaces, at most one blank line."""
    text = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def decode(data: bytes) -> str:
    """Text bytes as str: UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_pdf(data: bytes) -> list[str]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseFailed("the PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ParseFailed:
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise ParseFailed(f"the PDF cannot be read ({type(exc).__name__}: {exc})"[:500]) from exc
    return pages


def parse_docx(data: bytes) -> list[str]:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        parts = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    except Exception as exc:  # python-docx / lxml / zipfile errors alike
        raise ParseFailed(f"the Word document cannot be read ({type(exc).__name__})") from exc
    return ["\n\n".join(parts)]


def parse_html(data: bytes | str) -> list[str]:
    from selectolax.lexbor import LexborHTMLParser

    markup = decode(data) if isinstance(data, bytes) else data
    tree = LexborHTMLParser(_BLOCK.sub("\n<", markup))
    for node in tree.css(_DROPPED):
        node.decompose()
    title = tree.css_first("title")
    root = tree.css_first("main") or tree.css_first("article") or tree.body or tree.root
    body = root.text(deep=True, separator="") if root is not None else ""
    heading = title.text(strip=True) if title is not None else ""
    return [f"{heading}\n\n{body}" if heading and heading not in body[:500] else body]


def parse_csv(data: bytes) -> list[str]:
    """One line per row, ``column: value; ...``: a row reads as a sentence about itself."""
    text = decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:  # a field past csv's limit: no retry reads it better
        raise ParseFailed(f"the CSV cannot be read ({exc})"[:500]) from exc
    if not rows:
        return [""]
    header = [name.strip() for name in rows[0]]
    lines = []
    for row in rows[1:]:
        pairs = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row)
            if value.strip()
        ]
        if pairs:
            lines.append("; ".join(pairs))
    # Blank lines between rows: the chunker keeps rows whole.
    return ["\n\n".join(lines) if lines else ", ".join(header)]


def parse_text(data: bytes | str) -> list[str]:
    return [decode(data) if isinstance(data, bytes) else data]


_PARSERS: dict[str, Callable[[bytes], list[str]]] = {
    formats.PDF: parse_pdf,
    formats.DOCX: parse_docx,
    formats.HTML: parse_html,
    formats.CSV: parse_csv,
    formats.MARKDOWN: parse_text,
    formats.TEXT: parse_text,
}


def parse(fmt: str, data: bytes) -> list[str]:
    """The cleaned text sections of ``data``; :class:`ParseFailed` if unreadable or empty."""
    sections = [clean(section) for section in _PARSERS[fmt](data)]
    sections = [section for section in sections if section]
    if not sections:
        raise ParseFailed(f"no text found in this {fmt.upper()} file")
    return sections
