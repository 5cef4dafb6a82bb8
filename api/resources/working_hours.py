"""Working hours: the tenant's schedule, division overrides, the timezone, public status."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.timekeeping import (
    DivisionWorkingHoursView,
    ScheduleBody,
    StatusQuery,
    TimezoneBody,
    TimezoneView,
    WorkingHoursStatus,
    WorkingHoursView,
)
from shared.timekeeping import schedules

TAGS = ("Working Hours",)
MANAGE = schedules.MANAGE
_NOT_SET = " A tenant that never set working hours is always open (`configured: false`)."


class WorkingHoursResource:
    @endpoint(
        "List global working hours",
        response=WorkingHoursView,
        description="The tenant's weekly schedule, in its timezone." + _NOT_SET,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return schedules.get_global(req.context.db, ctx)

    @endpoint(
        "Upsert global working hours",
        permission=MANAGE,
        body=ScheduleBody,
        response=WorkingHoursView,
        description="Intervals include their start and exclude their end; they must not"
        " overlap or cross midnight. A holiday closes its whole local date.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, body: ScheduleBody):
        return schedules.put_global(req.context.db, ctx, body.as_schedule())


class DivisionWorkingHoursResource:
    @endpoint(
        "List division working hours",
        response=DivisionWorkingHoursView,
        description="The division's override, or the tenant's schedule with"
        " `inherits_global: true`." + _NOT_SET,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        return schedules.get_division(req.context.db, ctx, id)

    @endpoint(
        "Upsert division working hours override",
        permission=MANAGE,
        body=ScheduleBody,
        response=DivisionWorkingHoursView,
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, body: ScheduleBody):
        return schedules.put_division(req.context.db, ctx, id, body.as_schedule())

    @endpoint(
        "Delete division working hours override",
        permission=MANAGE,
        status=204,
        description="The division follows the tenant's schedule again; 404 when it has no"
        " override.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        schedules.delete_division(req.context.db, ctx, id)


class TimezoneResource:
    @endpoint("Get tenant timezone", response=TimezoneView, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return schedules.get_timezone(req.context.db, ctx)

    @endpoint(
        "Update tenant timezone",
        permission=MANAGE,
        body=TimezoneBody,
        response=TimezoneView,
        description="An IANA name (e.g. `Asia/Jakarta`); an unknown name is 422. Working hours,"
        " SLA due times and local send times use it from then on.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, body: TimezoneBody):
        return schedules.put_timezone(req.context.db, ctx, body.timezone)


class PublicStatusResource:
    @endpoint(
        "Check working hours status (public)",
        public=True,
        query=StatusQuery,
        response=WorkingHoursStatus,
        errors=(404,),
        description="Whether the tenant (or one of its divisions) is open now, and when that"
        " next changes; correct across daylight-saving changes. 404 for an unknown tenant slug or"
        " a division not of that tenant.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, query: StatusQuery):
        return schedules.public_status(req.context.db, query.tenant, query.division_id)


ROUTES = [
    ("/api/working-hours", WorkingHoursResource()),
    ("/api/working-hours/timezone", TimezoneResource()),
    ("/api/divisions/{id:uuid}/working-hours", DivisionWorkingHoursResource()),
    ("/api/public/working-hours/status", PublicStatusResource()),
]
