"""Parts of a request several resources read the same way: the raw body, Idempotency-Key,
a multipart form and its parts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import falcon
from pydantic import StringConstraints, TypeAdapter, ValidationError

from api.endpoint import BadRequest, PayloadTooLarge, UnsupportedMediaType
from api.errors import validation_details
from shared.errors import ValidationFailed

_IDEMPOTENCY_KEY = TypeAdapter(
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
)


def idempotency_key(req: falcon.Request) -> str | None:
    """The optional ``Idempotency-Key`` header, 1..255 characters."""
    raw = req.get_header("Idempotency-Key")
    if raw is None:
        return None
    try:
        return _IDEMPOTENCY_KEY.validate_python(raw)
    except ValidationError as exc:
        raise ValidationFailed(
            "Idempotency-Key is invalid", details=validation_details(exc, prefix="Idempotency-Key")
        ) from exc


def raw_body(req: falcon.Request) -> bytes:
    """The body as sent (signatures are computed over these bytes), within the size bound."""
    limit = req.context.max_body_bytes
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request bodies are limited to {limit} bytes")
    return raw


@dataclass(frozen=True, slots=True)
class FormPart:
    """A multipart part, its Content-Disposition already decoded."""

    name: str | None
    filename: str | None
    content_type: str | None
    stream: Any


def form_parts(form: Iterable[Any]) -> Iterator[FormPart]:
    """The parts of a multipart form (``req.get_media()``, or a form parsed from bytes).

    Falcon decodes a part's Content-Disposition as UTF-8 when ``name`` or ``filename`` is
    first read; a filename in Latin-1, as some clients send it, raised there (a 500). Read
    up front, such a part answers 400; so does a part's Content-Type that is not ASCII
    (Falcon decodes it as ASCII: a 500 too). A part's stream must be read before the next
    part.
    """
    for part in form:
        try:
            name, filename = part.name, part.filename
        except UnicodeDecodeError as exc:
            raise BadRequest(
                "A part of the multipart form has a name or filename that is not UTF-8",
                details=[{"field": "file", "message": "Content-Disposition is not UTF-8"}],
            ) from exc
        try:
            content_type = part.content_type
        except UnicodeDecodeError as exc:
            raise BadRequest(
                "A part of the multipart form has a Content-Type that is not ASCII",
                details=[{"field": "file", "message": "Content-Type is not ASCII"}],
            ) from exc
        yield FormPart(name, filename, content_type, part.stream)


def multipart_form(req: falcon.Request, refusal: str) -> Iterator[FormPart]:
    """The parts of a ``multipart/form-data`` body (streamed, not buffered); 415 with
    ``refusal`` for any other media type.

    Media types are case-insensitive, but Falcon picks a body's handler by the
    Content-Type as written: ``req.get_media()`` refused ``Multipart/Form-Data`` (415).
    """
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != falcon.MEDIA_MULTIPART:
        raise UnsupportedMediaType(refusal)
    handler = req.options.media_handlers[falcon.MEDIA_MULTIPART]
    form = handler.deserialize(req.bounded_stream, req.content_type, req.content_length)
    return form_parts(form)
