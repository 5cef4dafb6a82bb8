"""Turn every failure into ``{"error": {"code", "message", "details"}}`` with the right status.

Domain errors carry their own status and code; Falcon's HTTP errors (unknown
route, wrong method, malformed JSON...) are mapped to stable codes; anything
else is a 500 that names the request id and nothing internal, while the
traceback goes to the log.
"""

from __future__ import annotations

import logging

import falcon
import psycopg.errors
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from api.error_shape import STATUS_CODES, error_body
from shared.errors import DomainError

log = logging.getLogger("api.errors")


def _write(resp: falcon.Response, status: int, code: str, message: str, details=None) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = error_body(code, message, details)


def handle_domain_error(req, resp, ex: DomainError, params) -> None:
    retry_after = getattr(ex, "retry_after", None)
    if retry_after is not None:
        resp.set_header("Retry-After", str(retry_after))
    _write(resp, ex.status, ex.code, ex.message, ex.details)


def serialize_http_error(req, resp, ex: falcon.HTTPError) -> None:
    """Error serializer for Falcon's HTTPError (keeps Falcon's headers, e.g. ``Allow``)."""
    status = ex.status_code
    code = getattr(ex, "code", None) or STATUS_CODES.get(status, "error")
    if ex.description:
        message = ex.description
    elif status == 404:
        message = f"Nothing at {req.path}"
    elif status == 405:
        message = f"{req.method} is not allowed on {req.path}"
    else:
        message = ex.title or "Error"
    details = getattr(ex, "details", None) or []
    _write(resp, status, code, message, details)


def handle_unexpected(req, resp, ex: Exception, params) -> None:
    request_id = getattr(req.context, "request_id", None)
    log.exception("unhandled error on %s %s (request %s)", req.method, req.path, request_id)
    _write(
        resp,
        500,
        "internal_error",
        f"Something went wrong on our side. Quote request id {request_id} when reporting it.",
        [{"request_id": request_id}],
    )


#: Constraint failures that mean the request's values were wrong (422); others conflict (409).
_INVALID_VALUE = (psycopg.errors.NotNullViolation, psycopg.errors.CheckViolation)


def handle_constraint_error(req, resp, ex: IntegrityError | DataError, params) -> None:
    """A safety net: a constraint the schemas missed answers 409/422, never 500.

    Every such answer is a schema or service bug (input should be refused before
    it reaches the database), so it is logged with its traceback, like a 500.
    """
    request_id = getattr(req.context, "request_id", None)
    log.error(
        "database refused %s %s (request %s): validate this earlier",
        req.method,
        req.path,
        request_id,
        exc_info=ex,
    )
    if isinstance(ex, DataError) or isinstance(ex.orig, _INVALID_VALUE):
        _write(resp, 422, "validation_error", "Some values cannot be stored", [])
    else:
        _write(resp, 409, "conflict", "The change conflicts with existing data", [])


#: SQLSTATEs of a transaction PostgreSQL rolled back because another one held or changed
#: the same rows: deadlock_detected, serialization_failure, lock_not_available.
_COLLIDED = frozenset({"40P01", "40001", "55P03"})
#: The server going away: admin_shutdown, crash_shutdown, cannot_connect_now (a start).
_SHUTTING_DOWN = frozenset({"57P01", "57P02", "57P03"})
#: Seconds a client is asked to wait before retrying a request the database could not serve.
DATABASE_RETRY_AFTER = 1


def handle_database_error(req, resp, ex: OperationalError, params) -> None:
    """What the database could not do now is the client's to retry, not a 500.

    A collision with a concurrent transaction (nothing was saved) answers 409
    ``concurrent_update``; the statement timeout (``DB_STATEMENT_TIMEOUT_MS``) 503
    ``database_timeout``; a database that cannot be reached or is shutting down 503
    ``database_unavailable``, with ``Retry-After``. Anything else is unexpected.
    """
    sqlstate = getattr(ex.orig, "sqlstate", None)
    request_id = getattr(req.context, "request_id", None)
    if sqlstate in _COLLIDED:
        log.warning(
            "%s on %s %s (request %s)", type(ex.orig).__name__, req.method, req.path, request_id
        )
        message = "Another change to the same data was in progress; nothing was saved. Retry."
        _write(resp, 409, "concurrent_update", message, [])
        return
    if isinstance(ex.orig, psycopg.errors.QueryCanceled):
        log.error(
            "statement timeout on %s %s (request %s)", req.method, req.path, request_id, exc_info=ex
        )
        message = "The database took too long to answer; narrow the request or retry later."
        code = "database_timeout"
    elif sqlstate is None or sqlstate.startswith("08") or sqlstate in _SHUTTING_DOWN:
        log.error(
            "database unavailable on %s %s (request %s): %s",
            req.method,
            req.path,
            request_id,
            ex.orig,
        )
        message = "The database cannot be reached right now; retry later."
        code = "database_unavailable"
    else:
        handle_unexpected(req, resp, ex, params)
        return
    resp.set_header("Retry-After", str(DATABASE_RETRY_AFTER))
    _write(resp, 503, code, message, [])


def validation_details(
    exc: ValidationError, *, prefix: str = "", whole: str = "body"
) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per failing field, with dotted paths (``items[2].name``);
    ``whole`` names what failed as a whole (or a field with an empty name): the body, or
    the query string."""
    details = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        path = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        message = error["msg"]
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        details.append({"field": path or whole, "message": message})
    return details


#: Every handler, most general first (Falcon picks the most specific one that matches).
HANDLERS = (
    (Exception, handle_unexpected),
    (DomainError, handle_domain_error),
    (IntegrityError, handle_constraint_error),
    (DataError, handle_constraint_error),
    (OperationalError, handle_database_error),
)


def register(app: falcon.App) -> None:
    for exception, handler in HANDLERS:
        app.add_error_handler(exception, handler)
    app.set_error_serializer(serialize_http_error)
