"""Parts of a request several resources read the same way: the raw body, Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

import falcon
from pydantic import StringConstraints, TypeAdapter, ValidationError

from api.endpoint import PayloadTooLarge
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
