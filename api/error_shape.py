"""The API's error body, ``{"error": {"code", "message", "details"}}``, and its status codes.

Standard library only: gunicorn's master loads the web worker class
(:mod:`api.gunicorn_worker`), which writes this shape for what gunicorn refuses, and it
must not pull in the app (Falcon, SQLAlchemy, pydantic) to do so. :mod:`api.errors` and
:mod:`api.stream_refusals` write the same shape from here.
"""

from __future__ import annotations

import json
from typing import Any

#: Stable codes for the statuses a framework or server answers itself.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    402: "plan_limit_reached",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "dependency_unavailable",
}


def error_body(code: str, message: str, details: list[Any] | None = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "details": details or []}})
