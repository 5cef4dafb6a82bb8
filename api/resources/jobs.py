"""Jobs: the status and result of work answered 202 (bulk actions)."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.conversations import JobView
from shared import jobs


class JobResource:
    @endpoint(
        "Get a job's status and result",
        description="Readable by whoever started the job and by those with the rights its"
        " kind needs (a bulk action: `conversations.manage`); anyone else gets 404.",
        response=JobView,
        tags=("Jobs",),
    )
    def on_get(self, req, resp, *, ctx, id):
        return jobs.get(req.context.db, ctx, id)


ROUTES = [("/api/jobs/{id:uuid}", JobResource())]
