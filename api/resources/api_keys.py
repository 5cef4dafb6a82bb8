"""API keys: list your own, create (shown once), revoke."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.identity import ApiKeyCreate, ApiKeyCreated
from shared.identity import api_keys
from shared.schemas.identity import ApiKeyView

TAGS = ("API Keys",)


class ApiKeysResource:
    @endpoint(
        "List caller's API keys",
        query=ListQuery,
        response=Page[ApiKeyView],
        description="Newest first, revoked and expired keys included; never the key itself.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ListQuery):
        page = api_keys.list_own_keys(req.context.db, ctx, **query.model_dump())
        return Plain(
            {"items": [ApiKeyView.data(k) for k in page.items], "next_cursor": page.next_cursor}
        )

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
