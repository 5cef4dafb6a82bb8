"""Agents: the tenant's human users."""

from __future__ import annotations

from api.endpoint import Cached, Plain, endpoint
from api.schemas.common import Page
from api.schemas.identity import AgentCreate, AgentListQuery, AgentStatusUpdate, AgentUpdate
from shared.identity import agents
from shared.identity.agents_list_cache import PAGES
from shared.schemas.identity import AgentView
from workers.actors import platform_email as _send_email  # noqa: F401  (installs the enqueuer)

TAGS = ("Agents",)


class AgentsResource:
    @endpoint("List all agents", query=AgentListQuery, response=Page[AgentView], tags=TAGS)
    def on_get(self, req, resp, *, ctx, query: AgentListQuery):
        filters = query.model_dump()

        def page() -> Plain:
            found = agents.list_agents(req.context.db, ctx, **filters)
            return Plain({"items": found.items, "next_cursor": found.next_cursor})

        # PERF: an unchanged page is answered from memory (shared/identity/agents_list_cache.py).
        return Cached(PAGES, ctx.tenant_id, tuple(sorted(filters.items())), page)

    @endpoint(
        "Create a new agent",
        errors=(402, 409),
        permission="agents.manage",
        body=AgentCreate,
        response=AgentView,
        status=201,
        description="Without `password`, the agent is emailed a single-use, expiring link to"
        " set one (`send_email`); until then they cannot log in. 402 `plan_limit_reached`"
        " when the plan's seats are all taken.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: AgentCreate):
        return agents.create_agent(req.context.db, ctx, **body.model_dump())


class AgentResource:
    @endpoint("Get an agent by ID", response=AgentView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return agents.get_agent(req.context.db, ctx, id)

    @endpoint(
        "Update an agent",
        errors=(409, 429),
        body=AgentUpdate,
        response=AgentView,
        description=(
            "Admins change any field; agents change their own name, avatar, password. A new"
            " password for yourself needs `current_password`: 422 `validation_error` naming"
            " it when missing, 403 `invalid_password` when wrong (counted as a failed login:"
            " 429 `rate_limited` past the login limits). An admin setting another agent's"
            " password sends none."
        ),
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: AgentUpdate):
        return agents.update_agent(req.context.db, ctx, id, body.model_dump(exclude_unset=True))

    @endpoint(
        "Delete an agent",
        errors=(409,),
        permission="agents.manage",
        status=204,
        description="Soft delete: revokes their API keys and tokens and unassigns their"
        " unresolved conversations (conversation.unassigned each), which stay in their"
        " divisions' queues.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        agents.delete_agent(req.context.db, ctx, id)


class AgentStatusResource:
    @endpoint(
        "Toggle agent online/offline status",
        errors=(409,),
        body=AgentStatusUpdate,
        response=AgentView,
        description="409 for a suspended agent set online.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: AgentStatusUpdate):
        return agents.set_status(req.context.db, ctx, id, body.status)


ROUTES = [
    ("/api/agents", AgentsResource()),
    ("/api/agents/{id:uuid}", AgentResource()),
    ("/api/agents/{id:uuid}/status", AgentStatusResource()),
]
