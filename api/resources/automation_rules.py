"""Automation rules: CRUD, toggle, dry-run, and each rule's runs and events."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.automation import (
    DryRunBody,
    DryRunResult,
    EventListQuery,
    RuleCreate,
    RuleListQuery,
    RuleUpdate,
    RunListQuery,
)
from api.schemas.common import Page
from shared.automation import dry_run, history, rules
from shared.automation.views import EventView, RuleView, RunView

TAGS = ("Automation",)


def page_of(view, page) -> Plain:
    return Plain({"items": [view.data(r) for r in page.items], "next_cursor": page.next_cursor})


class RulesResource:
    @endpoint(
        "List automation rules",
        permission=rules.VIEW,
        query=RuleListQuery,
        response=Page[RuleView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: RuleListQuery):
        return page_of(RuleView, rules.list_rules(req.context.db, ctx, **query.model_dump()))

    @endpoint(
        "Create an automation rule",
        permission=rules.MANAGE,
        body=RuleCreate,
        response=RuleView,
        status=201,
        description=(
            "The rule is validated whole: every problem is a 422 detail with its path"
            " (conditions.conditions[1].value, actions[0].params.agent_id). Past"
            " AUTOMATION_MAX_RULES_PER_TENANT rules: 422 rule_limit."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: RuleCreate):
        return rules.create_rule(req.context.db, ctx, body.model_dump())


class RuleResource:
    @endpoint("Get an automation rule by ID", permission=rules.VIEW, response=RuleView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return rules.get_rule(req.context.db, ctx, id)

    @endpoint(
        "Update an automation rule",
        permission=rules.MANAGE,
        body=RuleUpdate,
        response=RuleView,
        description="Increments version; the merged rule is validated whole.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: RuleUpdate):
        return rules.update_rule(req.context.db, ctx, id, body.model_dump(exclude_unset=True))

    @endpoint(
        "Delete an automation rule",
        permission=rules.MANAGE,
        status=204,
        description="Its runs are kept.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        rules.delete_rule(req.context.db, ctx, id)


class RuleToggleResource:
    @endpoint(
        "Toggle automation rule active state",
        permission=rules.MANAGE,
        response=RuleView,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return rules.toggle_rule(req.context.db, ctx, id)


class RuleDryRunResource:
    @endpoint(
        "Dry-run an automation rule against a test payload",
        permission=rules.MANAGE,
        body=DryRunBody,
        response=DryRunResult,
        description=(
            "Every condition with the value it saw and whether it matched, the actions"
            " that would run with rendered params, and the rule's effective state."
            " Optional `rule` tests unsaved edits. Changes nothing."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: DryRunBody):
        rule = body.rule.model_dump(exclude_unset=True) if body.rule is not None else None
        result = dry_run.dry_run(
            req.context.db,
            ctx,
            id,
            rule=rule,
            payload=body.payload,
            event_id=body.event_id,
            event_type=body.event_type,
        )
        # NOTE: dry-run only reads; rolling back (not committing) makes sure of it.
        req.context.db.rollback()
        # PERF: the result is JSON-ready plain data; the suite checks it against DryRunResult.
        return Plain(result)


class RuleRunsResource:
    @endpoint(
        "List automation runs for a specific rule",
        permission=rules.VIEW,
        query=RunListQuery,
        response=Page[RunView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: RunListQuery):
        filters = query.model_dump(exclude={"from_", "to", "rule_id"})
        page = history.list_rule_runs(
            req.context.db, ctx, id, since=query.from_, until=query.to, **filters
        )
        return page_of(RunView, page)


class RuleEventsResource:
    @endpoint(
        "List automation events for a rule",
        permission=rules.VIEW,
        query=EventListQuery,
        response=Page[EventView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: EventListQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        page = history.list_rule_events(
            req.context.db, ctx, id, since=query.from_, until=query.to, **filters
        )
        return page_of(EventView, page)


ROUTES = [
    ("/api/automation/rules", RulesResource()),
    ("/api/automation/rules/{id:uuid}", RuleResource()),
    ("/api/automation/rules/{id:uuid}/toggle", RuleToggleResource()),
    ("/api/automation/rules/{id:uuid}/dry-run", RuleDryRunResource()),
    ("/api/automation/rules/{id:uuid}/runs", RuleRunsResource()),
    ("/api/automation/rules/{id:uuid}/events", RuleEventsResource()),
]
