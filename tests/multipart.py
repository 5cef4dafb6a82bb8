"""multipart/form-data bodies for the upload tests, framed as a browser's form sends them."""

from __future__ import annotations

import uuid


def form(
    content: bytes,
    *,
    filename: str,
    content_type: str,
    field: str = "file",
    before: dict[str, str] | None = None,
    header_encoding: str = "utf-8",
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a form whose text fields ``before`` come first, then the file
    ``content`` in ``field``. The boundary is random, as a browser's is. The file part's
    headers are encoded in ``header_encoding`` (some clients send a Latin-1 filename)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (before or {}).items()
    ]
    parts.append(
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode(header_encoding)
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
