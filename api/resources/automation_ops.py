"""Automation operations: snooze, schedules, rollout, effective state, global control."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.automation import (
    BulkSnoozeBody,
    BulkSnoozeResult,
    ControlUpdate,
    ControlView,
    EffectiveState,
    EffectiveStateQuery,
    PreviewQuery,
    RolloutBody,
    RuleScheduleUpdate,
    SchedulePreview,
    SnoozeBody,
)
from api.schemas.common import ListQuery, Page
from shared.automation import control, operations
from shared.automation.views import RuleView

TAGS = ("Automation",)
_PAST = " A time not in the future (or over 366 days ahead) is 422 naming `until`."


class SnoozedRulesResource:
    @endpoint(
        "List snoozed automation rules",
        permission=control.VIEW,
        query=ListQuery,
        response=Page[RuleView],
        description="Rules whose snooze has not ended yet, newest first.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ListQuery):
        page = operations.list_snoozed(req.context.db, ctx, **query.model_dump())
        return Plain(
            {"items": [RuleView.data(r) for r in page.items], "next_cursor": page.next_cursor}
        )


class BulkSnoozeResource:
    @endpoint(
        "Snooze multiple automation rules",
        permission=control.MANAGE,
        body=BulkSnoozeBody,
        response=BulkSnoozeResult,
        description="One transaction; one result per id, in order (`not_found` for an id"
        " that is not one of the workspace's rules)." + _PAST,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: BulkSnoozeBody):
        return operations.snooze_many(req.context.db, ctx, body.rule_ids, body.until)


class RuleSnoozeResource:
    @endpoint(
        "Snooze an automation rule until a given time",
        permission=control.MANAGE,
        body=SnoozeBody,
        response=RuleView,
        description="The rule does not run until `until`; the snooze then ends by itself"
        " (no job: evaluation compares with now)." + _PAST,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: SnoozeBody):
        return operations.snooze(req.context.db, ctx, id, body.until)


class RuleUnsnoozeResource:
    @endpoint(
        "Unsnooze an automation rule",
        permission=control.MANAGE,
        response=RuleView,
        description="Ends the snooze now; a rule that is not snoozed is answered unchanged.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return operations.unsnooze(req.context.db, ctx, id)


class RuleScheduleResource:
    @endpoint(
        "Update schedule settings for an automation rule",
        permission=control.MANAGE,
        body=RuleScheduleUpdate,
        response=RuleView,
        description="Weekly windows (`days`, as working hours) and `exceptions` (local dates"
        " it never runs), in `timezone` or the tenant's; wall-clock times hold across"
        " daylight-saving changes. Overlapping or inverted windows, intervals crossing"
        " midnight and unknown timezones are 422 naming the field.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: RuleScheduleUpdate):
        changes = body.model_dump(mode="json", exclude_unset=True)
        return operations.update_schedule(req.context.db, ctx, id, changes)


class RuleSchedulePreviewResource:
    @endpoint(
        "Preview upcoming schedule windows for an automation rule",
        permission=control.VIEW,
        query=PreviewQuery,
        response=SchedulePreview,
        description="The next `count` windows (default 10, at most 100), computed by the"
        " evaluator's own code; a window open now is listed from now.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: PreviewQuery):
        return operations.preview_schedule(req.context.db, ctx, id, count=query.count)


class RuleRolloutResource:
    @endpoint(
        "Update rollout percentage for an automation rule",
        permission=control.MANAGE,
        body=RolloutBody,
        response=RuleView,
        description="The rule runs on conversations whose hash of (rule id, conversation id)"
        " falls in 0..percentage-1 of 0-99: a conversation stays in as the percentage grows.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: RolloutBody):
        return operations.update_rollout(req.context.db, ctx, id, body.rollout_percentage)


class RuleEffectiveStateResource:
    @endpoint(
        "Get the effective state of an automation rule",
        permission=control.VIEW,
        query=EffectiveStateQuery,
        response=EffectiveState,
        errors=(422,),
        description="Whether the rule runs now, and each check with its reason: active,"
        " snooze, global control, schedule, rollout (for `conversation_id` when given)."
        " The evaluator and the dry-run apply the same checks. An `event_type` that does"
        " not trigger the rule is 422; a `conversation_id` not of the workspace, 404.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: EffectiveStateQuery):
        return operations.effective_state(
            req.context.db,
            ctx,
            id,
            event_type=query.event_type,
            conversation_id=query.conversation_id,
        )


class ControlResource:
    @endpoint(
        "Get global automation control state",
        permission=control.VIEW,
        response=ControlView,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return control.get_control(req.context.db, ctx)

    @endpoint(
        "Update global automation control state",
        permission=control.MANAGE,
        body=ControlUpdate,
        response=ControlView,
        description="Pause everything (`enabled: false`) or some event types, or cap action"
        " executions per minute. Applies to the next event every worker takes. While"
        " paused, events are queued but not evaluated; they run when re-enabled. Past the"
        " ceiling, events wait for the next minute.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, body: ControlUpdate):
        return control.update_control(req.context.db, ctx, body.model_dump(exclude_unset=True))


ROUTES = [
    ("/api/automation/rules/snoozed", SnoozedRulesResource()),
    ("/api/automation/rules/snooze", BulkSnoozeResource()),
    ("/api/automation/rules/{id:uuid}/snooze", RuleSnoozeResource()),
    ("/api/automation/rules/{id:uuid}/unsnooze", RuleUnsnoozeResource()),
    ("/api/automation/rules/{id:uuid}/schedule", RuleScheduleResource()),
    ("/api/automation/rules/{id:uuid}/schedule/preview", RuleSchedulePreviewResource()),
    ("/api/automation/rules/{id:uuid}/rollout", RuleRolloutResource()),
    ("/api/automation/rules/{id:uuid}/effective-state", RuleEffectiveStateResource()),
    ("/api/automation/control", ControlResource()),
]
