"""SLA: policies, their breaches, and a conversation's SLA status."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.timekeeping import (
    ConversationSlaView,
    SlaBreachView,
    SlaPolicyCreate,
    SlaPolicyUpdate,
    SlaPolicyView,
)
from shared.timekeeping import sla_policies

TAGS = ("SLA",)
VIEW = sla_policies.VIEW
MANAGE = sla_policies.MANAGE


class PoliciesResource:
    @endpoint(
        "List SLA policies",
        permission=VIEW,
        query=ListQuery,
        response=Page[SlaPolicyView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ListQuery):
        page = sla_policies.list_policies(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create an SLA policy",
        permission=MANAGE,
        body=SlaPolicyCreate,
        response=SlaPolicyView,
        status=201,
        errors=(409,),
        description="Applies to conversations opened afterwards: the first active matching"
        " policy (lowest priority, then oldest) is attached when a conversation opens.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: SlaPolicyCreate):
        return sla_policies.create_policy(req.context.db, ctx, body.model_dump())


class PolicyResource:
    @endpoint(
        "Update an SLA policy",
        permission=MANAGE,
        body=SlaPolicyUpdate,
        response=SlaPolicyView,
        errors=(409,),
        description="check_sla applies new targets to open conversations from its next run.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: SlaPolicyUpdate):
        changes = body.model_dump(exclude_unset=True)
        return sla_policies.update_policy(req.context.db, ctx, id, changes)

    @endpoint(
        "Delete an SLA policy",
        permission=MANAGE,
        status=204,
        description="check_sla stops tracking it; its breaches stay in reports.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        sla_policies.delete_policy(req.context.db, ctx, id)


class BreachesResource:
    @endpoint(
        "List SLA breaches for a policy",
        permission=VIEW,
        query=ListQuery,
        response=Page[SlaBreachView],
        description="Newest first.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = sla_policies.list_breaches(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


class ConversationSlaResource:
    @endpoint(
        "Get SLA status for a conversation",
        response=ConversationSlaView,
        description="The policy, each target's due, met and breached times, and the latest"
        f" {sla_policies.STATUS_BREACHES} breaches (oldest first; the policy's breaches list"
        " pages them all).",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        return sla_policies.conversation_sla(req.context.db, ctx, id)


ROUTES = [
    ("/api/sla-policies", PoliciesResource()),
    ("/api/sla-policies/{id:uuid}", PolicyResource()),
    ("/api/sla-policies/{id:uuid}/breaches", BreachesResource()),
    ("/api/conversations/{id:uuid}/sla", ConversationSlaResource()),
]
