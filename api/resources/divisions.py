"""Divisions: teams of agents that conversations can be routed to."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.divisions import AgentIds, DivisionCreate, DivisionUpdate
from shared.inbox import divisions
from shared.schemas.identity import AgentView
from shared.schemas.team import DivisionDetail, DivisionView

TAGS = ("Divisions",)
MANAGE = divisions.MANAGE


class DivisionsResource:
    @endpoint("List divisions", query=ListQuery, response=Page[DivisionView], tags=TAGS)
    def on_get(self, req, resp, *, ctx, query: ListQuery):
        page = divisions.list_divisions(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create a division",
        errors=(409,),
        permission=MANAGE,
        body=DivisionCreate,
        response=DivisionDetail,
        status=201,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: DivisionCreate):
        return divisions.create_division(req.context.db, ctx, **body.model_dump())


class DivisionResource:
    @endpoint("Get a division with agents", response=DivisionDetail, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return divisions.get_division(req.context.db, ctx, id)

    @endpoint(
        "Update a division",
        errors=(409,),
        permission=MANAGE,
        body=DivisionUpdate,
        response=DivisionDetail,
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: DivisionUpdate):
        changes = body.model_dump(exclude_unset=True)
        return divisions.update_division(req.context.db, ctx, id, changes)

    @endpoint(
        "Delete a division",
        permission=MANAGE,
        status=204,
        description="Its conversations lose the division; its memberships are removed.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        divisions.delete_division(req.context.db, ctx, id)


class DivisionAgentsResource:
    @endpoint("List agents in a division", query=ListQuery, response=Page[AgentView], tags=TAGS)
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = divisions.list_division_agents(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Assign agents to a division",
        permission=MANAGE,
        body=AgentIds,
        response=DivisionDetail,
        description="Idempotent; every id must be a live agent of the workspace.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: AgentIds):
        return divisions.add_agents(req.context.db, ctx, id, body.agent_ids)

    @endpoint(
        "Remove agents from a division",
        permission=MANAGE,
        body=AgentIds,
        status=204,
        description="Ids that are not members are ignored.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id, body: AgentIds):
        divisions.remove_agents(req.context.db, ctx, id, body.agent_ids)


ROUTES = [
    ("/api/divisions", DivisionsResource()),
    ("/api/divisions/{id:uuid}", DivisionResource()),
    ("/api/divisions/{id:uuid}/agents", DivisionAgentsResource()),
]
