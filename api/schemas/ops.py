"""Query and answer shapes of the operators' console API (``/api/ops/...``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.schemas.common import Input, Query
from shared.ops.console import DEFAULT_MINUTES


class OverviewQuery(Query):
    minutes: Annotated[int, Field(ge=1, le=24 * 60)] = DEFAULT_MINUTES


class DelayedQuery(Query):
    queue: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    kind: Literal["retry", "scheduled"] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class DeadLetterQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(max_length=512)] | None = None
    include_requeued: bool = False


class DeadLetterRequeue(Input):
    """The requeue's options; the body may be left out."""

    accept_duplicate: bool = Field(
        False,
        description="Send a channel send the customer may already have again anyway,"
        " accepting that they may get it twice: one in doubt (`delivery_unknown`: its worker"
        " stopped during the Meta or SMTP call), one Meta took but answered unreadably"
        " (`bad_response`), or one the provider accepted after it had failed"
        " (`accepted_after_failure`). Without it such a requeue answers 409"
        " `send_not_requeueable` with that reason. The api channel, whose receivers"
        " deduplicate, needs no consent.",
    )
