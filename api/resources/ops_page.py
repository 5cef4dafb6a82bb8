"""``/ops``: the operators' console page, its login and its buttons.

Who may look: the platform operator, with ``Authorization: Bearer <METRICS_TOKEN>`` or
the ``ops_session`` cookie the login form sets from that token; a tenant admin
(``automation.manage``) with a bearer token, an API key, or the cookie set by logging
in with email and password, who sees their tenant's slice. The cookie lives on
``/ops`` only, HttpOnly and SameSite=Strict, so no other site can make a browser
press the page's buttons; an operator cookie holds its expiry, a random session id
and an HMAC of them and the token, never the token itself: it is refused once
expired or logged out (the ended session id is kept in Redis until it would expire).
Anything unexpected answers an HTML page with the right status: 401 the login form,
403, 503 naming Redis when it is down; never a 500 page for a known fault.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from urllib.parse import parse_qs

import falcon
from pydantic import ValidationError

from api import ops_html
from api.resources.ops import PERMISSION, ops_scope
from api.schemas.ops import OverviewQuery
from shared import dead_letters
from shared.channels.send_revival import DuplicatePossible
from shared.config import get_settings
from shared.errors import DomainError, Forbidden, Unauthenticated
from shared.identity import auth
from shared.logs import tenant_id_var
from shared.ops import console, delayed, keys, queues, redis_access
from workers import resend
from workers.actors import channels_outbound as _send_outbound  # noqa: F401  (enqueuer)
from workers.queues import ALL as QUEUES

log = logging.getLogger(__name__)

COOKIE = "ops_session"
PATH = "/ops"
#: How long an operator's page session lasts (a tenant admin's lasts as their token).
OPERATOR_SESSION_SECONDS = 8 * 3600
#: Form bodies are tiny; refuse anything bigger.
MAX_FORM_BYTES = 8192

_SECURITY_HEADERS = {
    "Content-Security-Policy": ops_html.CSP,
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _operator_signature(expires: int, nonce: str) -> str | None:
    token = get_settings().metrics_token
    if not token:
        return None
    return hmac.new(
        get_settings().secret_key.encode(),
        f"ops-operator:{token}:{expires}:{nonce}".encode(),
        hashlib.sha256,
    ).hexdigest()


def _new_operator_cookie() -> str:
    expires, nonce = int(time.time()) + OPERATOR_SESSION_SECONDS, secrets.token_hex(16)
    return f"op.{expires}.{nonce}.{_operator_signature(expires, nonce)}"


def _operator_session(value: str) -> tuple[int, str] | None:
    """``(expires, session id)`` of a genuine, unexpired operator cookie, else None."""
    parts = value.split(".")
    stamp = parts[1] if len(parts) == 4 and parts[0] == "op" else ""
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return None
    expires, nonce, signature = int(parts[1]), parts[2], parts[3]
    expected = _operator_signature(expires, nonce)
    # NOTE: bytes: compare_digest() raises TypeError for a str with non-ASCII characters.
    valid = expected and hmac.compare_digest(signature.encode(), expected.encode())
    if not valid or expires <= time.time():
        return None
    return expires, nonce


def _session_ended(nonce: str) -> bool:
    key = keys.ended_session_key(redis_access.namespace(), nonce)
    try:
        return bool(redis_access.client().exists(key))
    except redis_access.redis.RedisError as exc:
        raise redis_access.RedisDown(exc) from exc


def _end_session(expires: int, nonce: str) -> None:
    key = keys.ended_session_key(redis_access.namespace(), nonce)
    try:
        redis_access.client().set(key, "1", ex=max(int(expires - time.time()), 1))
    except redis_access.redis.RedisError:
        log.warning("could not end an operator's console session (Redis down)", exc_info=True)


def page_scope(req: falcon.Request) -> uuid.UUID | None:
    """None for the operator, else the tenant admin's tenant; 401 or 403 otherwise."""
    if req.get_header("Authorization") or req.get_header("X-API-Key"):
        return ops_scope(req)
    values = req.get_cookie_values(COOKIE)
    if not values:
        raise Unauthenticated("Log in to see the console")
    value = values[0]
    operator = _operator_session(value)
    if operator is not None:
        if _session_ended(operator[1]):
            raise Unauthenticated("Your console session has ended; log in again")
        return None
    if value.startswith("jwt."):
        ctx = auth.authenticate_token(
            req.context.db, value[4:], request_id=req.context.request_id, ip=req.remote_addr
        )
        ctx.require(PERMISSION)
        tenant_id_var.set(ctx.tenant_id)
        return ctx.tenant_id
    raise Unauthenticated("Your console session has ended; log in again")


def _html(resp: falcon.Response, status: str, text: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_HTML
    resp.set_headers(_SECURITY_HEADERS)
    resp.text = text


def _fail(resp: falcon.Response, error: DomainError) -> None:
    """Answer a known fault as a page: the login form for 401, a message otherwise."""
    if isinstance(error, Unauthenticated):
        _html(resp, falcon.HTTP_401, ops_html.login_page(error.message))
    else:
        status = falcon.code_to_http_status(error.status)
        _html(resp, status, ops_html.error_page(status, error.message))


def _form(req: falcon.Request) -> dict[str, str]:
    raw = req.bounded_stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise DomainError("The form is too large")
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    # WHY: PostgreSQL text cannot hold NUL: a login's email with one failed in the
    # database (the safety net's JSON 422, logged as a bug, instead of this page's 400).
    if any("\x00" in key or "\x00" in value for key, value in form.items()):
        raise DomainError("Form fields must not contain NUL characters")
    return form


def _same_origin(req: falcon.Request) -> None:
    """Refuse a cookie-authenticated form posted from another origin (belt and braces
    beside SameSite=Strict)."""
    origin = req.get_header("Origin")
    if not origin or origin == "null":
        return
    try:
        here = req.host + (f":{req.port}" if req.port not in (80, 443) else "")
    except ValueError:
        # WHY: Falcon raises on a Host header whose port is not a number (a 500); no
        # origin is that host, so the form is refused like any foreign one.
        here = None
    if origin.split("://", 1)[-1] != here:
        raise Forbidden("Forms of the console must come from the console")


class OpsPageResource:
    def on_get(self, req, resp):
        try:
            query = OverviewQuery.model_validate(
                {k: v for k, v in req.params.items() if k == "minutes"}
            )
        except ValidationError:
            _html(resp, falcon.HTTP_400, ops_html.error_page("400", "minutes: 1 to 1440"))
            return
        try:
            tenant_id = page_scope(req)
            view = console.snapshot(
                req.context.db, QUEUES, tenant_id=tenant_id, minutes=query.minutes
            )
        except DomainError as error:
            _fail(resp, error)
            return
        if req.get_param("fragment"):
            _html(resp, falcon.HTTP_200, ops_html.live_fragment(view))
            return
        page = ops_html.page(view, minutes=query.minutes, notice=req.get_param("notice"))
        _html(resp, falcon.HTTP_200, page)


class OpsLoginResource:
    def on_get(self, req, resp):
        _html(resp, falcon.HTTP_200, ops_html.login_page())

    def on_post(self, req, resp):
        try:
            form = _form(req)
            _same_origin(req)
            secure = get_settings().cookie_secure
            token = form.get("token", "").strip()
            expected_token = get_settings().metrics_token
            if token:
                if not (
                    expected_token and hmac.compare_digest(token.encode(), expected_token.encode())
                ):
                    raise Unauthenticated("That is not the operator token")
                value, max_age = _new_operator_cookie(), OPERATOR_SESSION_SECONDS
            else:
                result = auth.login(
                    req.context.db,
                    email=form.get("email", "").strip(),
                    password=form.get("password", ""),
                    tenant_slug=form.get("tenant", "").strip() or None,
                    ip=req.remote_addr,
                    request_id=req.context.request_id,
                )
                req.context.db.commit()
                ctx = auth.authenticate_token(req.context.db, result.token.token)
                ctx.require(PERMISSION)
                value, max_age = f"jwt.{result.token.token}", result.token.expires_in
        except DomainError as error:
            req.context.db.rollback()
            _fail(resp, error)
            return
        resp.set_cookie(
            COOKIE,
            value,
            max_age=max_age,
            path=PATH,
            secure=secure,
            http_only=True,
            same_site="Strict",
        )
        raise falcon.HTTPSeeOther("/ops")


class OpsLogoutResource:
    def on_post(self, req, resp):
        """Forget the cookie and end its session: an operator's is refused from now on, a
        tenant admin's token in it is revoked."""
        values = req.get_cookie_values(COOKIE)
        operator = _operator_session(values[0]) if values else None
        if operator is not None:
            _end_session(*operator)
        if values and values[0].startswith("jwt."):
            try:
                ctx = auth.authenticate_token(req.context.db, values[0][4:])
                auth.logout(req.context.db, ctx)
                req.context.db.commit()
            except DomainError:
                req.context.db.rollback()  # expired or revoked already: nothing to revoke
        resp.unset_cookie(COOKIE, path=PATH, same_site="Strict")
        raise falcon.HTTPSeeOther("/ops")


class OpsActionResource:
    """The page's buttons: one form endpoint, then back to the page with a notice."""

    def on_post(self, req, resp):
        try:
            form = _form(req)
            tenant_id = page_scope(req)
            _same_origin(req)
            notice = self._act(req, form, tenant_id)
        except DuplicatePossible as refused:
            # WHY: the operator may accept a duplicate (the API's accept_duplicate); the
            # page asks them, with a button that posts the same requeue with that consent.
            req.context.db.rollback()
            page = ops_html.requeue_consent_page(form["id"], reason=refused.reason, why=refused.why)
            _html(resp, falcon.HTTP_409, page)
            return
        except DomainError as error:
            req.context.db.rollback()
            _fail(resp, error)
            return
        except redis_access.redis.RedisError as exc:
            _fail(resp, redis_access.RedisDown(exc))
            return
        raise falcon.HTTPSeeOther(f"/ops?notice={ops_html.quote_notice(notice)}")

    def _act(self, req, form: dict[str, str], tenant_id: uuid.UUID | None) -> str:
        action, queue, item = form.get("action"), form.get("queue", ""), form.get("id", "")
        session = req.context.db
        if action in ("pause", "resume"):
            if tenant_id is not None:
                raise Forbidden("Pausing a queue affects every tenant: only the operator may")
            queues.set_paused(
                redis_access.client(), redis_access.namespace(), queue, QUEUES, action == "pause"
            )
            return f"Queue {queue} {'paused' if action == 'pause' else 'resumed'}."
        if action == "retry":
            view = delayed.retry_now(queue, item, tenant_id=tenant_id, send=resend.send)
            return f"{view['actor']} sent to run now."
        if action == "delete-delayed":
            view = delayed.delete_delayed(queue, item, tenant_id=tenant_id)
            return f"Delayed {view['actor'] or 'undecodable message'} deleted."
        if action in ("requeue", "delete-dead"):
            try:
                dead_id = uuid.UUID(item)
            except ValueError as exc:
                raise DomainError("No such dead letter") from exc
            if action == "requeue":
                row = dead_letters.requeue_dead_letter(
                    session,
                    dead_id,
                    tenant_id=tenant_id,
                    send=resend.send,
                    accept_duplicate=form.get("accept_duplicate") == "true",
                )
                session.commit()
                return f"{row.actor_name} re-enqueued."
            dead_letters.delete_dead_letter(session, dead_id, tenant_id=tenant_id)
            session.commit()
            return "Dead letter deleted."
        raise DomainError(f"Unknown action {action!r}")


class OpsDeadLetterPage:
    def on_get(self, req, resp, id):
        try:
            tenant_id = page_scope(req)
            row = dead_letters.get_dead_letter(req.context.db, id, tenant_id=tenant_id)
        except DomainError as error:
            _fail(resp, error)
            return
        view = dead_letters.dead_letter_view(row, full=True)
        _html(resp, falcon.HTTP_200, ops_html.dead_letter_page(view))


ROUTES = [
    ("/ops", OpsPageResource()),
    ("/ops/login", OpsLoginResource()),
    ("/ops/logout", OpsLogoutResource()),
    ("/ops/actions", OpsActionResource()),
    ("/ops/dead-letters/{id:uuid}", OpsDeadLetterPage()),
]
