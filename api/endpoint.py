"""The ``@endpoint`` decorator: authenticate, authorize, validate, call, commit, serialize.

Resources stay thin: a responder receives a validated ``body`` / ``query`` and
the caller's :class:`~shared.context.Ctx`, calls one service and returns what to
send. The same declaration feeds the OpenAPI document, so what is validated is
exactly what is documented.

Example::

    class AgentsResource:
        @endpoint("Create a new agent", body=AgentCreate, response=AgentView, status=201)
        def on_post(self, req, resp, *, ctx, body):
            return agents.create_agent(req.context.db, ctx, **body.model_dump())
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import falcon
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api.auth import authenticate, authenticate_super_admin, request_epochs
from api.errors import validation_details
from shared import json_encoding
from shared.config import get_settings
from shared.db import is_disconnect
from shared.epoch_cache import EpochCache
from shared.errors import DomainError, ValidationFailed

log = logging.getLogger(__name__)

#: Requests replayed once when their database connection turns out to be dead; they run
#: on autocommit sessions too.
_RETRYABLE_METHODS = frozenset({"GET", "HEAD"})


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(DomainError):
    status, code = 415, "unsupported_media_type"


@dataclass(frozen=True, slots=True)
class Plain:
    """A result that is already plain JSON-ready data (dicts, lists, str, UUID, datetime).

    PERF: hot list endpoints build plain dicts straight from Core rows and skip
    pydantic validation; orjson writes them (:mod:`shared.json_encoding`: pydantic's
    bytes, 3-4x faster on a page of UUIDs and timestamps). The test suite still checks
    them against the declared response model (``VALIDATE_RESPONSES``), so the
    documented shape cannot drift.
    """

    data: Any


@dataclass(frozen=True, slots=True)
class Cached:
    """An answer kept rendered in ``cache`` while the data it shows are unchanged.

    ``compute`` returns the answer (say a :class:`Plain`) on a miss; its JSON bytes are
    kept per tenant and ``key`` (every query parameter that shapes it, normalized),
    tagged with the epochs the request read before any query (:mod:`shared.epoch_cache`).
    A hit answers those bytes: the same body, status and headers as a miss.
    """

    cache: EpochCache
    tenant_id: uuid.UUID
    key: Hashable
    compute: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class _Rendered:
    body: bytes


@dataclass(frozen=True)
class EndpointSpec:
    summary: str
    public: bool
    permission: str | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    description: str | None
    tags: tuple[str, ...]
    #: Error statuses the service answers beyond what the declaration implies (409, 429...).
    errors: tuple[int, ...] = ()
    #: Other statuses answered with ``response`` (an upsert's 201, health's 503).
    also: tuple[int, ...] = ()
    #: Media types of a body the responder reads itself (CSV, multipart, raw JSON).
    accepts: tuple[str, ...] = ()
    #: Media type of a success answer that is not JSON (CSV, text, a file: ``*/*``).
    produces: str | None = None
    #: An /api/admin route: a super-admin token (not a tenant credential) and an audit row.
    super_admin: bool = False


def _has_work_to_commit(req: falcon.Request, session: Session) -> bool:
    """Whether ending the request needs ``commit()``.

    PERF: GET and HEAD run on autocommit sessions (``api.middleware``): their
    statements are already committed, so unless ORM changes are waiting for a
    flush or after-commit callbacks were queued (``session.info``), closing the
    session is enough and the ORM's commit machinery is skipped.
    """
    if req.method not in _RETRYABLE_METHODS:
        return True
    return bool(session.info or session.new or session.dirty or session.deleted)


def _read_body(req: falcon.Request, limit: int) -> bytes:
    # APPSEC: read at most limit+1 bytes, so a chunked body without Content-Length
    # cannot make us buffer an unbounded amount.
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request bodies are limited to {limit} bytes")
    return raw


#: What no text field can hold, by the escape that writes it in JSON and a message.
#: PostgreSQL text cannot hold NUL; a lone UTF-16 surrogate (half an emoji: JSON joins a
#: whole pair into one character) is not text in any encoding: stored, the database
#: refused it (the safety net's anonymous 422); answered, the response could not be
#: encoded (a 500). Refusing both at the door keeps them out of every field.
_NOT_TEXT = (
    (re.compile(rb"\\u0000"), re.compile("\x00"), "must not contain NUL characters"),
    (
        re.compile(rb"\\u[dD][89a-fA-F]"),
        re.compile("[\ud800-\udfff]"),
        "holds half of an emoji (a lone UTF-16 surrogate), which is not text",
    ),
)


def _unstorable_path(value: Any, bad: re.Pattern, path: str = "") -> str | None:
    """The path (``items[2].name``) of the first string holding ``bad``, or None; for an
    object key, the object's path (the key itself may not be writable in the answer)."""
    if isinstance(value, str):
        return (path or "body") if bad.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if bad.search(str(key)):
                return path or "body"
            if found := _unstorable_path(item, bad, f"{path}.{key}" if path else str(key)):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := _unstorable_path(item, bad, f"{path}[{index}]"):
                return found
    return None


def _refuse_unstorable_text(raw: bytes, data: Any) -> None:
    # PERF: the byte search is the fast path; only a body holding such an escape is walked.
    for escape, bad, message in _NOT_TEXT:
        if escape.search(raw) and (field := _unstorable_path(data, bad)):
            raise ValidationFailed(
                "Text fields must hold text", details=[{"field": field, "message": message}]
            )


#: The charsets a JSON body may declare: UTF-8 (RFC 8259 8.1: JSON between systems is
#: UTF-8), under either spelling, or ASCII, which is a subset of it.
_JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})


def _refuse_other_media(req: falcon.Request) -> None:
    """415 unless the body is declared JSON in UTF-8 (or not declared at all).

    Media types and charset names are case-insensitive (``Application/JSON`` is JSON, and
    was refused); a type that only starts like JSON (``application/json-patch+json``) is
    not; and bytes declared Latin-1 would be read as UTF-8 (``Ã©`` stored for ``é``).
    """
    if not req.content_type:
        return
    media_type, params = falcon.parse_header(req.content_type)
    if media_type.strip().lower() != falcon.MEDIA_JSON:
        raise UnsupportedMediaType("Send the body as application/json")
    charset = params.get("charset")
    if charset is not None and charset.strip().lower() not in _JSON_CHARSETS:
        raise UnsupportedMediaType(
            "Send the body as application/json in UTF-8",
            details=[{"field": "Content-Type", "message": f"charset {charset[:40]} is not UTF-8"}],
        )


def _parse_body(req: falcon.Request, model: type[BaseModel], limit: int) -> BaseModel:
    raw = _read_body(req, limit)
    if raw.strip():
        _refuse_other_media(req)
    try:
        data = json_encoding.loads(raw) if raw.strip() else {}
    except json_encoding.TooDeep as exc:
        raise BadRequest(
            f"The request body nests deeper than {json_encoding.MAX_DEPTH} levels",
            details=[{"field": "body", "message": str(exc)}],
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "The request body is not valid JSON",
            details=[{"field": "body", "message": str(exc)[:200]}],
        ) from exc
    _refuse_unstorable_text(raw, data)
    if not isinstance(data, dict):
        raise BadRequest(
            "The request body must be a JSON object",
            details=[{"field": "body", "message": f"got {type(data).__name__}"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("Some fields are invalid", details=validation_details(exc)) from exc


def _media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";", 1)[0].strip().lower()


def _parse_query(req: falcon.Request, model: type[BaseModel]) -> BaseModel:
    if any("\x00" in str(value) for value in req.params.values()):
        raise BadRequest("Query parameters must not contain NUL characters")
    try:
        return model.model_validate(req.params)
    except ValidationError as exc:
        raise BadRequest(
            "Some query parameters are invalid", details=validation_details(exc, whole="query")
        ) from exc


def _error_status(exc: BaseException) -> int:
    if isinstance(exc, DomainError):
        return exc.status
    if isinstance(exc, falcon.HTTPError):
        return int(str(exc.status).split()[0])
    return 500


def audit_call(req: falcon.Request, summary: str, params: dict, status: int) -> None:
    """Write the platform audit row of a super-admin call (its own transaction)."""
    from shared.admin import audit

    ctx = req.context.get("admin_ctx")
    tenant_id = params.get("id") if req.path.startswith("/api/admin/tenants/") else None
    audit.record_now(
        super_admin_id=ctx.super_admin_id if ctx else req.context.get("audit_admin_id"),
        action=summary,
        method=req.method,
        path=req.path,
        status=status,
        tenant_id=tenant_id if isinstance(tenant_id, uuid.UUID) else None,
        details=req.context.get("audit_details"),
        request_id=req.context.get("request_id"),
        ip=req.remote_addr,
    )


def endpoint(
    summary: str,
    *,
    public: bool = False,
    permission: str | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    description: str | None = None,
    tags: tuple[str, ...] = (),
    errors: tuple[int, ...] = (),
    also: tuple[int, ...] = (),
    accepts: tuple[str, ...] = (),
    produces: str | None = None,
    super_admin: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a responder; see the module docstring.

    The error statuses it can answer are documented from the declaration itself
    (:func:`api.openapi.error_statuses`); ``errors`` adds only what the service
    raises beyond that, e.g. ``errors=(409,)`` for a :class:`~shared.errors.Conflict`.
    """
    spec = EndpointSpec(
        summary,
        public,
        permission,
        body,
        query,
        response,
        status,
        description,
        tags,
        errors,
        also,
        accepts,
        produces,
        super_admin,
    )
    adapter = TypeAdapter(response) if response is not None else None
    check_plain = get_settings().validate_responses

    def render(result: Any) -> bytes:
        if isinstance(result, Plain):
            if check_plain and adapter:
                adapter.validate_python(result.data, strict=False)
            return json_encoding.dumps(result.data)
        if adapter:
            return adapter.dump_json(adapter.validate_python(result, from_attributes=True))
        return json_encoding.dumps(result)

    def serve_cached(req: falcon.Request, cached: Cached) -> _Rendered:
        # NOTE: the tag is taken before compute() queries anything.
        tag = request_epochs(req, cached.tenant_id).tag(cached.cache, cached.tenant_id)
        entry_key = (cached.tenant_id, cached.key)
        body = cached.cache.get(entry_key, tag)
        if body is None:
            body = render(cached.compute())
            cached.cache.put(entry_key, tag, body)
        return _Rendered(body)

    def decorate(responder: Callable[..., Any]) -> Callable[..., Any]:
        def run(resource, req: falcon.Request, resp: falcon.Response, params: dict) -> Any:
            session = req.context.db
            kwargs: dict[str, Any] = {}
            if super_admin and not public:
                kwargs["ctx"] = authenticate_super_admin(req)
            elif not public:
                ctx = authenticate(req)
                if permission:
                    ctx.require(permission)
                kwargs["ctx"] = ctx
            if body is not None:
                # A responder that also accepts an upload reads that itself (body=None).
                uploaded = _media_type(req) in accepts and _media_type(req) != falcon.MEDIA_JSON
                kwargs["body"] = (
                    None if uploaded else _parse_body(req, body, req.context.max_body_bytes)
                )
            if query is not None:
                kwargs["query"] = _parse_query(req, query)
            try:
                result = responder(resource, req, resp, **params, **kwargs)
                if isinstance(result, Cached):
                    result = serve_cached(req, result)
                if session.in_transaction() and _has_work_to_commit(req, session):
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            return result

        def serve(resource, req: falcon.Request, resp: falcon.Response, params: dict) -> None:
            try:
                result = run(resource, req, resp, params)
            except DBAPIError as error:
                # A connection PostgreSQL dropped (restart, failover, idle kill) surfaces on
                # its first statement; the pool is invalidated by then, so a read is simply
                # run again on a fresh connection. Writes are not replayed: the client decides.
                if req.method not in _RETRYABLE_METHODS or not is_disconnect(error):
                    raise
                log.warning("database connection lost; retrying %s %s", req.method, req.path)
                req.context.db.close()
                result = run(resource, req, resp, params)
            if resp.status == falcon.HTTP_200 and status != 200:
                resp.status = status
            if result is None:
                # NOTE: a streamed body (CSV exports) is content too, not a 204.
                no_body = resp.text is None and resp.data is None and resp.media is None
                if no_body and resp.stream is None:
                    resp.status = falcon.HTTP_204 if status in (200, 204) else status
                return
            resp.content_type = falcon.MEDIA_JSON
            resp.data = result.body if isinstance(result, _Rendered) else render(result)

        @functools.wraps(responder)
        def wrapper(resource, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
            if not super_admin:
                serve(resource, req, resp, params)
                return
            try:
                serve(resource, req, resp, params)
            except BaseException as exc:
                audit_call(req, summary, params, _error_status(exc))
                raise
            audit_call(req, summary, params, int(str(resp.status).split()[0]))

        wrapper.__endpoint__ = spec
        return wrapper

    return decorate
