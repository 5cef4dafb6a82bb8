"""Request-scoped plumbing: request ids, body size limits and the database session."""

from __future__ import annotations

import re
import uuid

import falcon

from shared.db import get_sessionmaker
from shared.errors import DomainError
from shared.logs import request_id_var, tenant_id_var

#: Incoming X-Request-ID values we trust enough to echo back (no header injection).
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

#: Methods whose bodies we read.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LengthRequired(DomainError):
    status, code = 411, "length_required"


class RequestContext:
    """Give every request an id (echoed in ``X-Request-ID``) and a lazily-connecting session.

    The session does not touch the pool until a query runs, so public endpoints
    that never query cost nothing. It is always closed after the response; the
    endpoint wrapper commits, so anything left open here is rolled back.

    PERF: GET and HEAD run on an autocommit session: reads need no transaction,
    which saves the BEGIN and COMMIT round trips on every read. Anything that
    must change rows atomically is a POST, PUT, PATCH or DELETE. A read's connection
    stays with the request thread for its next request (``shared.db.RequestReadSession``);
    a write runs its transaction on it (``shared.db.RequestWriteSession``), so a thread
    uses one pooled connection at a time.
    """

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes
        self._sessions = get_sessionmaker(request_thread=True)
        self._read_sessions = get_sessionmaker(read_only=True, request_thread=True)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-ID")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        req.context.request_id = request_id
        request_id_var.set(request_id)
        # NOTE: threads serve one request after another; authentication sets the tenant.
        tenant_id_var.set(None)
        resp.set_header("X-Request-ID", request_id)
        reads = req.method in ("GET", "HEAD")
        req.context.db = self._read_sessions() if reads else self._sessions()
        # The endpoint wrapper enforces the limit again while reading chunked bodies.
        req.context.max_body_bytes = self.max_body_bytes

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        """Refuse a body sent without a length (411) or declared over the limit (413); a
        resource may raise its own limit (``max_body_bytes``, e.g. media uploads, which
        stream to disk)."""
        if req.method not in _BODY_METHODS:
            return
        limit = getattr(resource, "max_body_bytes", None) or self.max_body_bytes
        req.context.max_body_bytes = limit
        length = req.content_length
        if length is None and req.get_header("Transfer-Encoding"):
            # WHY: Falcon reads a body within its declared length: a chunked one read as
            # empty (a JSON body's fields "missing", an import of "0 files") or, through
            # the multipart parser, failed an assertion (a 500).
            raise LengthRequired("Send the body with a Content-Length header, not chunked")
        if length is not None and length > limit:
            raise falcon.HTTPContentTooLarge(
                description=f"Request bodies are limited to {limit} bytes"
            )

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        resp.set_header("X-Request-ID", req.context.get("request_id", "-"))
        session = req.context.get("db")
        if session is not None:
            session.close()
