"""Tell a file's real type from its first bytes: an upload's header is a claim, not a fact.

Covers what the channels carry (images, WhatsApp audio/video, PDFs and office
documents, plain text). ZIP-based office formats are indistinguishable from a
ZIP by magic alone, so a ZIP keeps the declared OOXML type when one was given.
"""

from __future__ import annotations

import re

#: How many leading bytes :func:`sniff` needs.
HEAD_BYTES = 512

_OOXML = (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
#: ``type/subtype`` as HTTP writes it: two RFC 9110 tokens.
_TCHARS = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA_TYPE = re.compile(rf"{_TCHARS}/{_TCHARS}")
_ALIASES = {"image/jpg": "image/jpeg", "audio/mp3": "audio/mpeg", "audio/x-wav": "audio/wav"}

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/msword"),
    (0, b"PK\x03\x04", "application/zip"),
)


def base_type(mime_type: str | None) -> str:
    """``"Audio/OGG; codecs=opus"`` -> ``"audio/ogg"`` (aliases normalised)."""
    value = (mime_type or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(value, value)


def well_formed(value: str | None) -> str | None:
    """``value`` if a ``Content-Type`` header can carry it (``type/subtype``, parameters in
    printable ASCII), else None.

    WHY: an inbound file keeps the type its sender declared when its bytes tell nothing;
    one with a control character or a character past Latin-1 made the download's header
    one no server sends, and the download answered 500.
    """
    if not value or not value.isascii() or not value.isprintable():
        return None
    return value if _MEDIA_TYPE.fullmatch(value.split(";", 1)[0].strip()) else None


def sniff(head: bytes, declared: str | None = None) -> str:
    """The MIME type the bytes show; ``application/octet-stream`` when unknown."""
    declared = base_type(declared)
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "application/zip" and declared in _OOXML:
                return declared
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g"):
            return "video/3gpp"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "audio/aac"
    if head and _looks_like_text(head):
        return "text/csv" if declared == "text/csv" else "text/plain"
    return "application/octet-stream"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the head's end is still text.
        return exc.start >= len(head) - 3
    return True


def contradicts(declared: str | None, sniffed: str) -> bool:
    """Whether a specific declared type names another kind of file than the bytes are."""
    declared = base_type(declared)
    if not declared or declared == "application/octet-stream" or declared == sniffed:
        return False
    return declared.split("/")[0] != sniffed.split("/")[0]
