"""Auth: register a workspace, log in and out, refresh, and who am I."""

from __future__ import annotations

from api.auth import clear_session_cookie, set_session_cookie
from api.endpoint import endpoint
from api.schemas.auth import (
    AcceptInvitationRequest,
    LoginRequest,
    LoginResponse,
    MeResponse,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
)
from shared.config import get_settings
from shared.identity import agents, auth, invitations, tenants
from shared.identity.security import issue_access_token
from shared.schemas.identity import AgentView

TAGS = ("Auth",)


def _start_session(resp, token) -> dict:
    """Set the ``session`` cookie for a browser and answer the token for an API client."""
    set_session_cookie(resp, token.token, token.expires_in, get_settings().cookie_secure)
    return {"access_token": token.token, "expires_in": token.expires_in}


class RegisterResource:
    @endpoint(
        "Register a new tenant organization",
        public=True,
        errors=(409,),
        body=RegisterRequest,
        response=RegisterResponse,
        status=201,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, body: RegisterRequest):
        registration = tenants.register_tenant(
            req.context.db,
            **body.model_dump(),
            request_id=req.context.request_id,
            ip=req.remote_addr,
        )
        token = issue_access_token(registration.admin.id, registration.tenant.id)
        return {
            "tenant": registration.tenant,
            "user": registration.admin,
            **_start_session(resp, token),
        }


class LoginResource:
    @endpoint(
        "Login with email and password",
        public=True,
        errors=(401, 403, 429),
        body=LoginRequest,
        response=LoginResponse,
        description=(
            "Sets the HttpOnly `session` cookie too. Failed logins are rate-limited: 429"
            " `rate_limited` with Retry-After past `LOGIN_RATE_LIMIT_PER_MINUTE` failures of"
            " an email from one network (a minute), or past `LOGIN_ACCOUNT_FAILURES_LIMIT`"
            " from all networks together (15 minutes from the first failure; every login of"
            " the email waits, the right password's too, for at most that window)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, body: LoginRequest):
        result = auth.login(
            req.context.db,
            email=body.email,
            password=body.password,
            tenant_slug=body.tenant,
            ip=req.remote_addr,
            request_id=req.context.request_id,
        )
        return {**_start_session(resp, result.token), "user": result.user}


class MeResource:
    @endpoint("Get current agent profile", response=MeResponse, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        agent, tenant = agents.get_profile(req.context.db, ctx)
        return {
            **AgentView.model_validate(agent).model_dump(),
            "permissions": sorted(ctx.permissions),
            "tenant": tenant,
        }


class LogoutResource:
    @endpoint("Logout (revokes this token, clears the cookie)", status=204, tags=TAGS)
    def on_post(self, req, resp, *, ctx):
        auth.logout(req.context.db, ctx)
        clear_session_cookie(resp)


class RefreshResource:
    @endpoint("Issue a fresh JWT for the current session", response=TokenResponse, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return _start_session(resp, auth.refresh(req.context.db, ctx))


class AcceptInvitationResource:
    @endpoint(
        "Accept an agent invitation (set the password)",
        public=True,
        errors=(404, 403, 410),
        body=AcceptInvitationRequest,
        response=LoginResponse,
        description="The token comes from the emailed link and works once, until it expires"
        " (404 unknown, 410 used or expired). Sets the password and logs the agent in, with"
        " the `session` cookie too.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, body: AcceptInvitationRequest):
        result = invitations.accept(
            req.context.db,
            token=body.token,
            password=body.password,
            ip=req.remote_addr,
            request_id=req.context.request_id,
        )
        return {**_start_session(resp, result.token), "user": result.user}


ROUTES = [
    ("/api/auth/login", LoginResource()),
    ("/api/auth/me", MeResource()),
    ("/api/auth/logout", LogoutResource()),
    ("/api/auth/refresh", RefreshResource()),
    ("/api/auth/register", RegisterResource()),
    ("/api/auth/accept-invitation", AcceptInvitationResource()),
]
