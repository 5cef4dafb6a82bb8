"""Roles and the permission catalogue."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.identity import PermissionView, RoleCreate, RoleUpdate
from shared.identity import roles
from shared.identity.permissions import PERMISSIONS
from shared.schemas.identity import RoleView

TAGS = ("Roles",)
MANAGE = "roles.manage"


class RolesResource:
    @endpoint(
        "List all roles with permissions", permission=MANAGE, response=list[RoleView], tags=TAGS
    )
    def on_get(self, req, resp, *, ctx):
        return roles.list_roles(req.context.db, ctx)

    @endpoint(
        "Create a custom role",
        errors=(409,),
        permission=MANAGE,
        body=RoleCreate,
        response=RoleView,
        status=201,
        description=(
            f"A workspace holds at most {roles.MAX_CUSTOM_ROLES} custom roles (built-ins not"
            " counted); past that, 422 role_limit."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: RoleCreate):
        return roles.create_role(req.context.db, ctx, **body.model_dump())


class RoleResource:
    @endpoint("Get a single role with permissions", permission=MANAGE, response=RoleView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return roles.get_role(req.context.db, ctx, id)

    @endpoint(
        "Update a role",
        errors=(409,),
        permission=MANAGE,
        body=RoleUpdate,
        response=RoleView,
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: RoleUpdate):
        return roles.update_role(req.context.db, ctx, id, **body.model_dump(exclude_unset=True))

    @endpoint("Delete a custom role", errors=(409,), permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        roles.delete_role(req.context.db, ctx, id)


class PermissionsResource:
    @endpoint(
        "List all available permissions",
        permission=MANAGE,
        response=list[PermissionView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return [
            {"key": p.key, "description": p.description, "default_roles": list(p.defaults)}
            for p in PERMISSIONS
        ]


ROUTES = [
    ("/api/roles", RolesResource()),
    ("/api/roles/{id:uuid}", RoleResource()),
    ("/api/permissions", PermissionsResource()),
]
