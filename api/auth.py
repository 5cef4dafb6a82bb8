"""Resolve the request's credential (Bearer JWT, ``session`` cookie or ``X-API-Key``)."""

from __future__ import annotations

import uuid

import falcon

from shared import epoch_cache
from shared.context import Ctx
from shared.errors import Forbidden, Unauthenticated
from shared.identity import auth
from shared.logs import tenant_id_var

#: Name of the HttpOnly cookie holding the JWT for browser clients.
SESSION_COOKIE = "session"


def bearer_token(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated("Use 'Authorization: Bearer <token>'")
    cookies = req.get_cookie_values(SESSION_COOKIE)
    return cookies[0] if cookies else None


def authenticate(req: falcon.Request) -> Ctx:
    """Return the caller of this request (memoized on ``req.context``) or raise 401."""
    ctx = req.context.get("ctx")
    if ctx is not None:
        return ctx
    api_key, token = credential(req)
    meta = {"request_id": req.context.request_id, "ip": req.remote_addr}
    epochs = None
    if token is not None:
        # PERF: the epochs of every read cache in the auth check's own Redis round trip.
        epochs = req.context.epochs = epoch_cache.read(auth.tenant_hint(token))
    ctx = resolve(req.context.db, api_key, token, epochs=epochs, **meta)
    req.context.ctx = ctx
    tenant_id_var.set(ctx.tenant_id)
    return ctx


def authenticate_super_admin(req: falcon.Request):
    """The super admin calling an /api/admin route (memoized), or 401/403.

    Only a Bearer token (or the ``session`` cookie) of a super admin passes: tenant
    tokens and API keys are refused with 403.
    """
    from shared.admin import super_admins

    ctx = req.context.get("admin_ctx")
    if ctx is not None:
        return ctx
    if req.get_header("X-API-Key"):
        raise Forbidden("API keys act in a workspace; this route needs a super-admin token")
    token = bearer_token(req)
    if token is None:
        raise Unauthenticated("Authentication required")
    ctx = super_admins.authenticate(
        req.context.db, token, request_id=req.context.request_id, ip=req.remote_addr
    )
    req.context.admin_ctx = ctx
    return ctx


def credential(req: falcon.Request) -> tuple[str | None, str | None]:
    """The request's ``(api_key, token)``, one of them set, or raise 401.

    Works on WSGI and ASGI requests alike (the stream process authenticates with it).
    """
    api_key = req.get_header("X-API-Key")
    if api_key:
        return api_key, None
    token = bearer_token(req)
    if token is None:
        raise Unauthenticated("Authentication required")
    return None, token


def resolve(
    session,
    api_key: str | None,
    token: str | None,
    *,
    epochs: epoch_cache.Epochs | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> Ctx:
    """The caller behind a :func:`credential` (checked again: revoked, suspended...) or 401."""
    if api_key:
        return auth.authenticate_api_key(session, api_key, request_id=request_id, ip=ip)
    if not token:
        raise Unauthenticated("Authentication required")
    return auth.authenticate_token(session, token, epochs=epochs, request_id=request_id, ip=ip)


def request_epochs(req: falcon.Request, tenant_id: uuid.UUID) -> epoch_cache.Epochs:
    """The read caches' epochs of this request: those read with its credential, or now."""
    epochs = req.context.get("epochs")
    if epochs is None:
        epochs = req.context.epochs = epoch_cache.read(tenant_id)
    return epochs


def set_session_cookie(resp: falcon.Response, token: str, max_age: int, secure: bool) -> None:
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/api",
        secure=secure,
        http_only=True,
        same_site="Lax",
    )


def clear_session_cookie(resp: falcon.Response) -> None:
    resp.unset_cookie(SESSION_COOKIE, path="/api", same_site="Lax")
