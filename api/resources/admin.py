"""Super Admin: platform administration under /api/admin (super-admin tokens only).

Every responder is declared ``super_admin=True``: the caller must hold a super-admin
token (tenant tokens and API keys get 403) and every call, refused or not, is written
to the platform audit log (:func:`api.endpoint.audit_call`).
"""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.admin import (
    AdminHealth,
    AdminTenantView,
    ImpersonationToken,
    PasswordResetSent,
    ProvisionedTenant,
    SuperAdminCreate,
    SuperAdminLogin,
    SuperAdminLoginResponse,
    SuperAdminView,
    TemporaryPassword,
    TenantListQuery,
    TenantProvision,
    TenantUpdate,
    TenantUserView,
    TenantWithUsage,
)
from api.schemas.common import ListQuery, Page
from shared.admin import health, impersonation, super_admins, tenants, usage, users
from workers.actors import platform_email as _send_email  # noqa: F401  (installs the enqueuer)
from workers.queues import ALL as QUEUES

TAGS = ("Super Admin",)


def admin(summary: str, **options):
    """``@endpoint`` for this group: a super-admin route, audited."""
    return endpoint(summary, super_admin=True, tags=TAGS, **options)


def _page(found) -> dict:
    return {"items": found.items, "next_cursor": found.next_cursor}


def _token(result, seconds: int) -> dict:
    return {
        "access_token": result.token.token,
        "expires_in": seconds,
        "expires_at": result.token.expires_at,
        "user": result.user,
    }


class LoginResource:
    @admin(
        "Super-admin login",
        public=True,
        errors=(401, 429),
        body=SuperAdminLogin,
        response=SuperAdminLoginResponse,
        description="Returns a super-admin token (`sa: true`, no `tid`), accepted only under"
        " /api/admin. Failed logins are rate-limited and audited.",
    )
    def on_post(self, req, resp, *, body: SuperAdminLogin):
        req.context.audit_details = {"email": body.email}
        result = super_admins.login(
            req.context.db, email=body.email, password=body.password, ip=req.remote_addr
        )
        req.context.audit_admin_id = result.super_admin.id
        return {
            "access_token": result.token.token,
            "expires_in": result.token.expires_in,
            "super_admin": result.super_admin,
        }


class TenantsResource:
    @admin("List all tenant organizations", query=TenantListQuery, response=Page[AdminTenantView])
    def on_get(self, req, resp, *, ctx, query: TenantListQuery):
        return _page(tenants.list_tenants(req.context.db, **query.model_dump()))

    @admin(
        "Provision a new tenant",
        errors=(409,),
        body=TenantProvision,
        response=ProvisionedTenant,
        status=201,
        description="Creates the tenant, its built-in roles and its admin in one transaction;"
        " the admin is emailed a set-password link (`send_email`).",
    )
    def on_post(self, req, resp, *, ctx, body: TenantProvision):
        done = tenants.provision(req.context.db, ctx, **body.model_dump())
        req.context.audit_details = {"tenant_id": str(done.tenant.id), "slug": done.tenant.slug}
        return {"tenant": done.tenant, "admin": done.admin, "invitation_id": done.invitation.id}


class TenantsUsageResource:
    @admin(
        "List all tenants with usage statistics",
        query=TenantListQuery,
        response=Page[TenantWithUsage],
        description="Totals from the rollups: conversations, messages, agents, AI replies and"
        " stored media bytes.",
    )
    def on_get(self, req, resp, *, ctx, query: TenantListQuery):
        return usage.list_usage(req.context.db, **query.model_dump())


class TenantResource:
    @admin("Get a tenant organization", response=AdminTenantView)
    def on_get(self, req, resp, *, ctx, id):
        return tenants.get(req.context.db, id)

    @admin(
        "Update a tenant organization",
        errors=(409,),
        body=TenantUpdate,
        response=AdminTenantView,
        description='`status: "active"` reactivates a suspended tenant.',
    )
    def on_patch(self, req, resp, *, ctx, id, body: TenantUpdate):
        changes = body.model_dump(exclude_unset=True)
        req.context.audit_details = {"changes": changes}
        return tenants.update(req.context.db, ctx, id, changes)

    @admin(
        "Suspend a tenant organization",
        status=204,
        description="Status `suspended`, data kept: credentials refused (403"
        " `tenant_suspended`), scheduler jobs skip it, queued work dropped with the reason,"
        " inbound webhooks acknowledged and dropped.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        tenants.suspend(req.context.db, ctx, id)


class TenantImpersonateResource:
    @admin(
        "Impersonate a tenant admin",
        errors=(409,),
        response=ImpersonationToken,
        description="A 1 h token (`imp` claim) for the tenant's oldest active admin; logged in"
        " the tenant's activity log.",
    )
    def on_post(self, req, resp, *, ctx, id):
        result = impersonation.impersonate(req.context.db, ctx, id)
        req.context.audit_details = {"user_id": str(result.user.id)}
        return _token(result, impersonation.TOKEN_SECONDS)


class HealthResource:
    @admin(
        "System health check",
        response=AdminHealth,
        description="PostgreSQL, Redis, the broker and its queue depths, the scheduler"
        " heartbeat, live worker processes (host, pid, since when) and every scheduler job's"
        " last run.",
    )
    def on_get(self, req, resp, *, ctx):
        return health.report(req.context.db, QUEUES)


class SuperAdminsResource:
    @admin("List super-admin accounts", response=list[SuperAdminView])
    def on_get(self, req, resp, *, ctx):
        return super_admins.list_all(req.context.db)

    @admin(
        "Create a super-admin account",
        errors=(409,),
        body=SuperAdminCreate,
        response=SuperAdminView,
        status=201,
    )
    def on_post(self, req, resp, *, ctx, body: SuperAdminCreate):
        req.context.audit_details = {"email": body.email}
        return super_admins.create(req.context.db, **body.model_dump())


class SuperAdminResource:
    @admin(
        "Delete a super-admin account",
        status=204,
        errors=(409,),
        description="409 for yourself or the last super admin.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        super_admins.delete(req.context.db, ctx, id)


class SuperAdminPasswordResource:
    @admin(
        "Reset a super-admin's password",
        response=TemporaryPassword,
        description="Returns a one-time temporary password; the account's older tokens are"
        " refused.",
    )
    def on_post(self, req, resp, *, ctx, id):
        password = super_admins.reset_password(req.context.db, ctx, id)
        return {"super_admin_id": id, "temporary_password": password}


class TenantUsersResource:
    @admin("List tenant users", query=ListQuery, response=Page[TenantUserView])
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        return _page(users.list_users(req.context.db, id, **query.model_dump()))


class TenantUserPasswordResource:
    @admin(
        "Reset a tenant user's password",
        response=PasswordResetSent,
        description="Clears the password, refuses older tokens and revokes API keys at once,"
        " and emails a set-password link (`send_email`).",
    )
    def on_post(self, req, resp, *, ctx, id, user_id):
        invitation = users.reset_password(req.context.db, ctx, id, user_id)
        req.context.audit_details = {"user_id": str(user_id)}
        user = users.get_user(req.context.db, id, user_id)
        return {
            "user_id": user_id,
            "invitation_id": invitation.id,
            "tokens_valid_after": user.tokens_valid_after,
        }


class TenantUserSuspendResource:
    @admin(
        "Suspend a tenant user",
        response=TenantUserView,
        description="Login, tokens and API keys are refused (403 `user_suspended`).",
    )
    def on_post(self, req, resp, *, ctx, id, user_id):
        req.context.audit_details = {"user_id": str(user_id)}
        return users.suspend(req.context.db, ctx, id, user_id)


class TenantUserActivateResource:
    @admin("Activate a tenant user", response=TenantUserView, errors=(402,))
    def on_post(self, req, resp, *, ctx, id, user_id):
        req.context.audit_details = {"user_id": str(user_id)}
        return users.activate(req.context.db, ctx, id, user_id)


class TenantUserImpersonateResource:
    @admin(
        "Impersonate a tenant user",
        errors=(409,),
        response=ImpersonationToken,
        description="A 1 h token with the `imp` claim; written to the tenant's activity log."
        " 409 for a suspended user or tenant.",
    )
    def on_post(self, req, resp, *, ctx, id, user_id):
        req.context.audit_details = {"user_id": str(user_id)}
        result = impersonation.impersonate(req.context.db, ctx, id, user_id)
        return _token(result, impersonation.TOKEN_SECONDS)


ROUTES = [
    ("/api/admin/auth/login", LoginResource()),
    ("/api/admin/tenants", TenantsResource()),
    ("/api/admin/tenants/usage", TenantsUsageResource()),
    ("/api/admin/tenants/{id:uuid}", TenantResource()),
    ("/api/admin/tenants/{id:uuid}/impersonate", TenantImpersonateResource()),
    ("/api/admin/tenants/{id:uuid}/users", TenantUsersResource()),
    (
        "/api/admin/tenants/{id:uuid}/users/{user_id:uuid}/reset-password",
        TenantUserPasswordResource(),
    ),
    ("/api/admin/tenants/{id:uuid}/users/{user_id:uuid}/suspend", TenantUserSuspendResource()),
    ("/api/admin/tenants/{id:uuid}/users/{user_id:uuid}/activate", TenantUserActivateResource()),
    (
        "/api/admin/tenants/{id:uuid}/users/{user_id:uuid}/impersonate",
        TenantUserImpersonateResource(),
    ),
    ("/api/admin/health", HealthResource()),
    ("/api/admin/super-admins", SuperAdminsResource()),
    ("/api/admin/super-admins/{id:uuid}", SuperAdminResource()),
    ("/api/admin/super-admins/{id:uuid}/reset-password", SuperAdminPasswordResource()),
]
