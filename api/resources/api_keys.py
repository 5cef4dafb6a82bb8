"""API keys: list your own, create (shown once), revoke."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.identity import ApiKeyCreate, ApiKeyCreated
from shared.identity import api_keys
from shared.schemas.identity import ApiKeyView

TAGS = ("API Keys",)


class ApiKeysResource:
    @endpoint("List caller's API keys", response=list[ApiKeyView], tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return api_keys.list_own_keys(req.context.db, ctx)

    @endpoint(
        "Create a new API key",
        permission="api_keys.manage",
        body=ApiKeyCreate,
        response=ApiKeyCreated,
        status=201,
        description="The `key` is in this response only; store it now.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: ApiKeyCreate):
        created = api_keys.create_key(req.context.db, ctx, **body.model_dump())
        return {**ApiKeyView.data(created.api_key), "key": created.key}


class ApiKeyResource:
    @endpoint("Revoke an API key", status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        api_keys.revoke_key(req.context.db, ctx, id)


ROUTES = [
    ("/api/api-keys", ApiKeysResource()),
    ("/api/api-keys/{id:uuid}", ApiKeyResource()),
]
